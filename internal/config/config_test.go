package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, file string, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := &Loader{Getenv: func(k string) string { return env[k] }}
	l.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if file != "" {
		l.File = file
	}
	return l.Load()
}

func writeFile(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "lockguard.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "upstream: file:5432\nmax-connections: 10\nstartup-timeout: 5s\nlisten: [\"127.0.0.1:7000\", /tmp/lg]\nlog-level: warn\n")
	env := map[string]string{"LOCKGUARD_MAX_CONNECTIONS": "20", "LOCKGUARD_LOG_LEVEL": "debug"}
	c, err := load(t, file, env, "--log-level", "error", "--listen", "127.0.0.1:7001", "--listen", "127.0.0.1:7002")
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream != "file:5432" || c.StartupTimeout != 5*time.Second {
		t.Errorf("file values lost: %+v", c)
	}
	if c.MaxConnections != 20 {
		t.Errorf("env did not override file: max-connections=%d", c.MaxConnections)
	}
	if c.LogLevel != "error" {
		t.Errorf("flag did not override env: log-level=%s", c.LogLevel)
	}
	if strings.Join(c.Listen, ",") != "127.0.0.1:7001,127.0.0.1:7002" {
		t.Errorf("repeated --listen: %q", c.Listen)
	}
	if c.DrainTimeout != Default().DrainTimeout {
		t.Errorf("default lost: drain-timeout=%v", c.DrainTimeout)
	}
	// Env lists are comma separated; LOCKGUARD_CONFIG names the file.
	c, err = load(t, "", map[string]string{"LOCKGUARD_CONFIG": file, "LOCKGUARD_LISTEN": "127.0.0.1:1, 127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream != "file:5432" || strings.Join(c.Listen, ",") != "127.0.0.1:1,127.0.0.1:2" {
		t.Errorf("LOCKGUARD_CONFIG/LOCKGUARD_LISTEN: %+v", c)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		args       []string
		want       string
	}{
		{"unknown key", "upstreams: x:1\n", nil, nil, "upstreams"},
		{"bad duration", "startup-timeout: soon\n", nil, nil, "soon"},
		{"bad env number", "", map[string]string{"LOCKGUARD_MAX_CONNECTIONS": "many"}, nil, "LOCKGUARD_MAX_CONNECTIONS"},
		{"bad sslmode", "", nil, []string{"--upstream-sslmode", "sometimes"}, "upstream-sslmode"},
		{"cert without key", "", nil, []string{"--tls-cert", "c.pem"}, "tls-key"},
		{"bad listen", "", nil, []string{"--listen", "nohostport"}, "listen"},
		{"message size", "", nil, []string{"--max-message-size", "10"}, "max-message-size"},
		{"negative cap", "", nil, []string{"--max-connections", "-1"}, "max-connections"},
		{"log format", "", nil, []string{"--log-format", "xml"}, "log-format"},
		{"client-tls value", "", nil, []string{"--client-tls", "prefer"}, "client-tls"},
		{"client-tls require without a certificate", "client-tls: require\n", nil, nil, "client-tls require needs tls-cert"},
		{"client-tls require from env without a certificate", "", map[string]string{"LOCKGUARD_CLIENT_TLS": "require"}, nil, "tls-cert"},
		{"short replica secret", "", map[string]string{"LOCKGUARD_REPLICA_SECRET": "hunter2"}, nil, "replica-secret must be at least 16"},
		{"negative catalog-max-age", "catalog-max-age: -1s\n", nil, nil, "catalog-max-age must be 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			_, err := load(t, file, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestClientTLS: client-tls comes from the file, LOCKGUARD_CLIENT_TLS or the
// flag, and defaults to allow.
func TestClientTLS(t *testing.T) {
	tlsArgs := []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		args       []string
		want       string
	}{
		{"default", "", nil, nil, "allow"},
		{"file", "client-tls: require\n", nil, tlsArgs, "require"},
		{"env", "", map[string]string{"LOCKGUARD_CLIENT_TLS": "require"}, tlsArgs, "require"},
		{"flag over env", "", map[string]string{"LOCKGUARD_CLIENT_TLS": "require"}, append([]string{"--client-tls", "allow"}, tlsArgs...), "allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			c, err := load(t, file, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.ClientTLS != tc.want {
				t.Fatalf("client-tls = %q, want %q", c.ClientTLS, tc.want)
			}
		})
	}
}

func TestDefaultsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: the config parser never panics, whatever the file holds.
func FuzzParse(f *testing.F) {
	f.Add([]byte("upstream: db:5432\nlisten: [\"0.0.0.0:6432\"]\n"))
	f.Add([]byte("startup-timeout: 1h\nmax-connections: 3\n"))
	f.Add([]byte("{]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if Parse(b, c) == nil {
			_ = c.Validate()
		}
	})
}

// TestRestartOnlyChanges: a reload reports the restart-only settings it
// cannot change, and only those.
func TestRestartOnlyChanges(t *testing.T) {
	running, err := load(t, writeFile(t, "upstream: db:5432\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := load(t, writeFile(t, `upstream: db:5433
listen: ["127.0.0.1:7000"]
event-loops: 2
replica-secret: 0123456789abcdef-new
monitor-dsn: postgres://monitor@db/app
lock-timeout: 5s
watchdog: terminate
log-level: debug
drain-timeout: 3s
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(RestartOnlyChanges(running, next), ",")
	if want := "listen,event-loops,monitor-dsn,replica-secret"; got != want {
		t.Errorf("RestartOnlyChanges = %s, want %s", got, want)
	}
	if got := RestartOnlyChanges(running, running); len(got) != 0 {
		t.Errorf("RestartOnlyChanges of a configuration with itself = %v", got)
	}
}
