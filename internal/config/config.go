// Package config loads lockguard's settings from defaults, a YAML file,
// LOCKGUARD_* environment variables and command-line flags, in that order of
// precedence (flags win).
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/lockguard/lockguard/guard"
	"go.yaml.in/yaml/v3"
)

// Config holds every setting of `lockguard serve`. Each field's yaml tag is
// also its flag name, and LOCKGUARD_ + the upper-cased name with '-' → '_' is
// its environment variable.
type Config struct {
	Listen          []string      `yaml:"listen" usage:"address to accept clients on: HOST:PORT or a unix socket path (repeatable; LOCKGUARD_LISTEN takes a comma-separated list)"`
	Upstream        string        `yaml:"upstream" usage:"PostgreSQL to relay to: HOST:PORT or a unix socket directory"`
	TLSCert         string        `yaml:"tls-cert" usage:"PEM certificate for TLS with clients (with tls-key); without it SSLRequest is answered 'N'"`
	TLSKey          string        `yaml:"tls-key" usage:"PEM private key for tls-cert"`
	TLSClientCA     string        `yaml:"tls-client-ca" usage:"PEM CA bundle; when set, every client must use TLS and present a certificate it signed"`
	ClientTLS       string        `yaml:"client-tls" usage:"TLS from clients: allow (TLS when the client asks and tls-cert is set) or require (plaintext clients get FATAL 28000; needs tls-cert); tls-client-ca implies require"`
	UpstreamSSLMode string        `yaml:"upstream-sslmode" usage:"TLS to PostgreSQL: disable, prefer, require, verify-ca or verify-full"`
	UpstreamCA      string        `yaml:"upstream-ca" usage:"PEM CA bundle to verify PostgreSQL's certificate"`
	MaxConnections  int           `yaml:"max-connections" usage:"most client sessions at once; more get FATAL 53300 (0 = no cap)"`
	MaxMessageSize  int           `yaml:"max-message-size" usage:"largest Query/Parse/Bind message in bytes; larger ones get 08P01"`
	StartupTimeout  time.Duration `yaml:"startup-timeout" usage:"time a client has from connect to the end of authentication"`
	ConnectTimeout  time.Duration `yaml:"connect-timeout" usage:"time to connect to PostgreSQL (TCP and TLS)"`
	DrainTimeout    time.Duration `yaml:"drain-timeout" usage:"on SIGTERM, how long sessions may finish their transactions before they are closed"`
	Admin           string        `yaml:"admin" usage:"HOST:PORT of the admin HTTP endpoint (/healthz, /readyz, POST /reload); empty = off"`
	AdminToken      string        `yaml:"admin-token" usage:"bearer token required by admin routes other than /healthz and /readyz; empty = none"`
	LogLevel        string        `yaml:"log-level" usage:"debug, info, warn or error"`
	LogFormat       string        `yaml:"log-format" usage:"text or json"`
	EventLoops      int           `yaml:"event-loops" usage:"epoll loops that relay plain-TCP and unix-socket sessions, PgBouncer style (0 = a goroutine per direction; changes need a restart)"`
	IOUring         bool          `yaml:"io-uring" usage:"event loops make each round's reads with one io_uring_enter and its writes with another (false = a read(2) and a write(2) per message; without io_uring they fall back by themselves; changes need a restart)"`

	Guard                      bool          `yaml:"guard" usage:"analyse statements and enforce the DDL policy and lock timeouts; false relays only"`
	LockTimeout                time.Duration `yaml:"lock-timeout" usage:"lock_timeout injected around DDL whose lock blocks reads or writes (0 = no injection, no retries)"`
	DDLStatementTimeout        time.Duration `yaml:"ddl-statement-timeout" usage:"statement_timeout injected with the lock timeout (0 = none)"`
	ConcurrentStatementTimeout time.Duration `yaml:"concurrent-statement-timeout" usage:"statement_timeout injected for CONCURRENTLY builds, which never get a lock timeout (0 = none)"`
	RetryAttempts              int           `yaml:"retry-attempts" usage:"tries of an autocommit DDL that hit the injected lock timeout, the first included (1 = no retry)"`
	RetryBaseDelay             time.Duration `yaml:"retry-base-delay" usage:"upper bound of the first retry's random delay; doubles each retry (full jitter)"`
	RetryMaxDelay              time.Duration `yaml:"retry-max-delay" usage:"upper bound of any retry delay"`
	RetryDeadline              time.Duration `yaml:"retry-deadline" usage:"no retry starts later than this after the first attempt"`
	MonitorDSN                 string        `yaml:"monitor-dsn" usage:"connection string of lockguard's own side connection (a role with pg_monitor): catalog facts and who blocks a DDL; empty = none"`
	ReplicaSecret              string        `yaml:"replica-secret" usage:"secret shared by the replicas in front of one PostgreSQL (with monitor-dsn): a CancelRequest that lands on another replica than its session's also ends what the session waits for in lockguard; empty = off (changes need a restart)"`
	AnalysisCacheSize          int           `yaml:"analysis-cache-size" usage:"statement analyses kept, keyed by text"`
	CatalogMaxAge              time.Duration `yaml:"catalog-max-age" usage:"how long catalog facts (foreign keys, partitions), and the analyses of reads and writes built on them, are kept before they are read again, so that schema changes that bypass lockguard count (DDL always reads them anew; 0 = until a DDL runs through lockguard)"`
	UnparsedDDL                string        `yaml:"unparsed-ddl" usage:"a statement lockguard cannot parse that looks like DDL: relay (PostgreSQL decides) or refuse (fail closed with LG002); always counted"`
	Shed                       bool          `yaml:"shed" usage:"keep statements out of PostgreSQL's lock queue: hold, then refuse with 55P03, what would wait behind a held or pending conflicting lock"`
	HoldBudget                 time.Duration `yaml:"hold-budget" usage:"how long a statement that would queue behind a lock is held in lockguard before it is shed (0 = shed at once)"`
	MaxHeldPerRelation         int           `yaml:"max-held-per-relation" usage:"statements held at once per relation; further ones are shed at once"`
	MonitorInterval            time.Duration `yaml:"monitor-interval" usage:"how often the lock monitor reads pg_locks while nothing waits"`
	MonitorBusyInterval        time.Duration `yaml:"monitor-busy-interval" usage:"how often it reads pg_locks while some lock request waits"`
	YieldWaiters               int           `yaml:"yield-waiters" usage:"a waiting DDL is cancelled (and retried) when this many requests queue behind it (0 = never by count)"`
	YieldWait                  time.Duration `yaml:"yield-wait" usage:"a waiting DDL is cancelled (and retried) when a request behind it has waited this long (0 = never by time)"`
	Watchdog                   string        `yaml:"watchdog" usage:"what to do with a session others wait behind: off, warn, cancel (a statement past watchdog-run) or terminate (also a session idle in its transaction past watchdog-idle)"`
	WatchdogIdle               time.Duration `yaml:"watchdog-idle" usage:"idle-in-transaction time after which a lock holder that others wait for is acted on"`
	WatchdogRun                time.Duration `yaml:"watchdog-run" usage:"statement run time after which a lock holder that others wait for is acted on"`

	// Policy is the DDL policy; only in the file (docs/rules.md).
	Policy guard.PolicyConfig `yaml:"policy" flag:"-"`
}

// Default returns the documented defaults (see README.md).
func Default() *Config {
	return &Config{
		Listen:          []string{"127.0.0.1:6432"},
		ClientTLS:       "allow",
		UpstreamSSLMode: "prefer",
		MaxConnections:  4096,
		EventLoops:      1,
		IOUring:         true,
		MaxMessageSize:  64 << 20,
		StartupTimeout:  60 * time.Second,
		ConnectTimeout:  10 * time.Second,
		DrainTimeout:    25 * time.Second,
		Admin:           "127.0.0.1:9633",
		LogLevel:        "info",
		LogFormat:       "text",

		Guard:             true,
		LockTimeout:       2 * time.Second,
		RetryAttempts:     5,
		RetryBaseDelay:    200 * time.Millisecond,
		RetryMaxDelay:     5 * time.Second,
		RetryDeadline:     30 * time.Second,
		AnalysisCacheSize: 10000,
		CatalogMaxAge:     time.Minute,
		UnparsedDDL:       "relay",

		Shed:                true,
		HoldBudget:          25 * time.Millisecond,
		MaxHeldPerRelation:  64,
		MonitorInterval:     time.Second,
		MonitorBusyInterval: 100 * time.Millisecond,
		YieldWaiters:        10,
		YieldWait:           500 * time.Millisecond,
		Watchdog:            "warn",
		WatchdogIdle:        10 * time.Second,
		WatchdogRun:         time.Minute,
	}
}

// Loader remembers where settings came from so that a reload (SIGHUP) can
// read the file and environment again and apply the same flags on top.
type Loader struct {
	File    string            // --config path, "" for none
	flags   map[string]string // flags given on the command line
	listens []string
	Getenv  func(string) string // nil means os.Getenv
}

// fields lists Config's settings by name.
func fields(c *Config) map[string]reflect.Value {
	v := reflect.ValueOf(c).Elem()
	m := make(map[string]reflect.Value, v.NumField())
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.Tag.Get("flag") != "-" {
			m[f.Tag.Get("yaml")] = v.Field(i)
		}
	}
	return m
}

// RestartOnly are the settings a reload leaves as they were: the sockets
// lockguard listens on and how it relays them, the admin endpoint's token,
// the log format, and the side connection with its replica secret.
var RestartOnly = []string{"listen", "admin", "admin-token", "log-format", "event-loops", "io-uring",
	"monitor-dsn", "replica-secret"}

// RestartOnlyChanges names the settings of RestartOnly whose value in next
// differs from running's: a reload to next keeps running's for them.
func RestartOnlyChanges(running, next *Config) []string {
	a, b := fields(running), fields(next)
	var out []string
	for _, k := range RestartOnly {
		if !reflect.DeepEqual(a[k].Interface(), b[k].Interface()) {
			out = append(out, k)
		}
	}
	return out
}

// RegisterFlags defines a flag for every setting on fs, plus --config. Call
// fs.Parse, then Load.
func (l *Loader) RegisterFlags(fs *flag.FlagSet) {
	l.flags = make(map[string]string)
	def := Default()
	t := reflect.TypeOf(def).Elem()
	vals := fields(def)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Tag.Get("flag") == "-" {
			continue
		}
		name := f.Tag.Get("yaml")
		usage := f.Tag.Get("usage")
		dv := vals[name]
		fv := &flagValue{l: l, name: name, def: format(dv)}
		if dv.Kind() == reflect.Bool {
			fs.Var(&boolFlag{fv}, name, usage)
			continue
		}
		fs.Var(fv, name, usage)
	}
	fs.StringVar(&l.File, "config", "", "YAML file with settings (keys are the flag names); LOCKGUARD_CONFIG also works")
}

type flagValue struct {
	l    *Loader
	name string
	def  string
	set  string
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	if f.set != "" {
		return f.set
	}
	return f.def
}

func (f *flagValue) Set(s string) error {
	if f.name == "listen" {
		f.l.listens = append(f.l.listens, s)
	}
	f.l.flags[f.name] = s
	f.set = s
	return nil
}

// boolFlag lets a boolean setting be given as --name or --name=false.
type boolFlag struct{ *flagValue }

func (*boolFlag) IsBoolFlag() bool { return true }

func format(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	default:
		return fmt.Sprint(x)
	}
}

// Load builds the configuration: defaults, then the file, then the
// environment, then flags. It validates the result.
func (l *Loader) Load() (*Config, error) {
	getenv := l.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	file := l.File
	if file == "" {
		file = getenv("LOCKGUARD_CONFIG")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		if err := Parse(b, c); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	fs := fields(c)
	for name, v := range fs {
		env := "LOCKGUARD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if s := getenv(env); s != "" {
			if err := setValue(v, s, true); err != nil {
				return nil, fmt.Errorf("%s: %w", env, err)
			}
		}
	}
	for name, s := range l.flags {
		if name == "listen" {
			fs[name].Set(reflect.ValueOf(append([]string(nil), l.listens...)))
			continue
		}
		if err := setValue(fs[name], s, false); err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes YAML into c, rejecting unknown keys.
func Parse(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		return err
	}
	return nil
}

func setValue(v reflect.Value, s string, list bool) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not true or false: %q", s)
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", s)
		}
		v.SetInt(int64(n))
	case reflect.Int64: // time.Duration
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("not a duration such as 30s: %q", s)
		}
		v.SetInt(int64(d))
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		panic("BUG: config field of kind " + v.Kind().String())
	}
	return nil
}

// Validate checks values that can be checked without touching the network.
func (c *Config) Validate() error {
	if len(c.Listen) == 0 {
		return errors.New("no listen address")
	}
	for _, a := range c.Listen {
		if !strings.HasPrefix(a, "/") {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("listen address %q: %w", a, err)
			}
		}
	}
	switch c.UpstreamSSLMode {
	case "disable", "prefer", "require", "verify-ca", "verify-full":
	default:
		return fmt.Errorf("upstream-sslmode %q: want disable, prefer, require, verify-ca or verify-full", c.UpstreamSSLMode)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls-cert and tls-key go together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return errors.New("tls-client-ca needs tls-cert and tls-key")
	}
	switch c.ClientTLS {
	case "allow":
	case "require":
		if c.TLSCert == "" {
			return errors.New("client-tls require needs tls-cert and tls-key")
		}
	default:
		return fmt.Errorf("client-tls %q: want allow or require", c.ClientTLS)
	}
	if c.EventLoops < 0 || c.EventLoops > 64 {
		return errors.New("event-loops must be between 0 (off) and 64")
	}
	if c.MaxConnections < 0 {
		return errors.New("max-connections must be 0 (no cap) or more")
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 1<<30-1 {
		return fmt.Errorf("max-message-size %d: want 1024 to %d bytes", c.MaxMessageSize, 1<<30-1)
	}
	for name, d := range map[string]time.Duration{"startup-timeout": c.StartupTimeout, "connect-timeout": c.ConnectTimeout,
		"drain-timeout": c.DrainTimeout, "retry-base-delay": c.RetryBaseDelay, "retry-max-delay": c.RetryMaxDelay, "retry-deadline": c.RetryDeadline} {
		if d <= 0 {
			return fmt.Errorf("%s must be positive", name)
		}
	}
	for name, d := range map[string]time.Duration{"lock-timeout": c.LockTimeout, "ddl-statement-timeout": c.DDLStatementTimeout,
		"concurrent-statement-timeout": c.ConcurrentStatementTimeout} {
		if d < 0 {
			return fmt.Errorf("%s must be 0 (off) or positive", name)
		}
	}
	if c.RetryAttempts < 1 {
		return errors.New("retry-attempts must be 1 (no retry) or more")
	}
	if c.HoldBudget < 0 || c.MaxHeldPerRelation < 1 || c.MonitorInterval <= 0 || c.MonitorBusyInterval <= 0 {
		return errors.New("hold-budget must be 0 or more; max-held-per-relation, monitor-interval and monitor-busy-interval positive")
	}
	if c.UnparsedDDL != "relay" && c.UnparsedDDL != "refuse" {
		return fmt.Errorf("unparsed-ddl %q: want relay or refuse", c.UnparsedDDL)
	}
	if c.YieldWaiters < 0 || c.YieldWait < 0 {
		return errors.New("yield-waiters and yield-wait must be 0 (off) or more")
	}
	if _, err := guard.NewPolicy(c.Policy); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	switch c.Watchdog {
	case "off", "warn", "cancel", "terminate":
	default:
		return fmt.Errorf("watchdog %q: want off, warn, cancel or terminate", c.Watchdog)
	}
	if c.WatchdogIdle <= 0 || c.WatchdogRun <= 0 {
		return errors.New("watchdog-idle and watchdog-run must be positive")
	}
	if c.AnalysisCacheSize < 0 {
		return errors.New("analysis-cache-size must be 0 or more")
	}
	if c.CatalogMaxAge < 0 {
		return errors.New("catalog-max-age must be 0 (until a DDL) or more")
	}
	if c.ReplicaSecret != "" && len(c.ReplicaSecret) < 16 {
		return errors.New("replica-secret must be at least 16 characters (e.g. openssl rand -hex 32): the replicas' notifications are signed with it")
	}
	if c.Admin != "" {
		if _, _, err := net.SplitHostPort(c.Admin); err != nil {
			return fmt.Errorf("admin address %q: %w", c.Admin, err)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log-format %q: want text or json", c.LogFormat)
	}
	return nil
}
