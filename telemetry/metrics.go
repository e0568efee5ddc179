package telemetry

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Metric names. docs/telemetry.md lists each with its attributes; the
// Prometheus names replace dots with underscores and add the unit suffix
// (_seconds) and _total for counters.
const (
	MetricOperationDuration = "db.client.operation.duration"
	MetricConnectionCount   = "db.client.connection.count"
	MetricClientConnections = "lockguard.client.connections"
	MetricStatements        = "lockguard.statements"
	MetricDDLOutcomes       = "lockguard.ddl.outcomes"
	MetricLockWait          = "lockguard.lock.wait.duration"
	MetricHoldDuration      = "lockguard.hold.duration"
	MetricQueueDepth        = "lockguard.queue.depth"
	MetricShed              = "lockguard.shed"
	MetricRetries           = "lockguard.retries"
	MetricPolicyViolations  = "lockguard.policy.violations"
	MetricBlockerXactAge    = "lockguard.blocker.xact.age"
	MetricAddedLatency      = "lockguard.proxy.added_latency"
	MetricParseFailures     = "lockguard.parse.failures"
	MetricWatchdogActions   = "lockguard.watchdog.actions"
	MetricHazards           = "lockguard.hazards"
	MetricLoopSessions      = "lockguard.event_loop.sessions"
	MetricLoopDepartures    = "lockguard.event_loop.departures"
	MetricLoopReturns       = "lockguard.event_loop.returns"
	MetricLoopEnters        = "lockguard.event_loop.io_uring_enters"
	MetricLoopRingOps       = "lockguard.event_loop.io_uring_ops"
)

// Attribute keys of lockguard's own (semconv says never to squat on db.*).
const (
	AttrClass     = attribute.Key("lockguard.statement.class")
	AttrDecision  = attribute.Key("lockguard.decision")
	AttrOutcome   = attribute.Key("lockguard.outcome")
	AttrIOOp      = attribute.Key("lockguard.io_op")
	AttrReason    = attribute.Key("lockguard.reason")
	AttrRule      = attribute.Key("lockguard.rule")
	AttrAction    = attribute.Key("lockguard.action")
	AttrRelation  = attribute.Key("lockguard.relation")
	AttrLockMode  = attribute.Key("lockguard.lock.mode")
	AttrState     = attribute.Key("lockguard.lock.state")
	AttrTimeout   = attribute.Key("lockguard.lock_timeout")
	AttrAttempts  = attribute.Key("lockguard.attempts")
	AttrQueueWait = attribute.Key("lockguard.queue.wait")
	AttrPID       = attribute.Key("lockguard.backend.pid")
	AttrBlocker   = attribute.Key("lockguard.blocker.pid")
)

// OperationBuckets are the advisory buckets of db.client.operation.duration.
var OperationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// LockWaitBuckets cover a DDL's wait for its lock up to long lock timeouts.
var LockWaitBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}

// AddedLatencyBuckets cover lockguard's own time on a message: microseconds
// when it only relays, up to the hold budget and beyond when it holds.
var AddedLatencyBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.025, 0.1, 0.5, 1}

// MaxRelations bounds the relation label of lockguard.queue.depth; further
// relations are summed under "_other".
const MaxRelations = 50

// maxCachedSets bounds each attribute-set cache (status codes, rules);
// beyond it the value is recorded as "_OTHER".
const maxCachedSets = 256

// Metrics are lockguard's instruments. Methods never allocate once the
// attribute sets they use have been seen.
type Metrics struct {
	OperationDuration *Histogram
	ConnectionCount   metric.Int64UpDownCounter
	ClientConns       metric.Int64UpDownCounter
	Statements        metric.Int64ObservableCounter
	DDLOutcomes       metric.Int64Counter
	LockWait          metric.Float64Histogram
	HoldDuration      metric.Float64Histogram
	Shed              metric.Int64Counter
	Retries           metric.Int64Counter
	PolicyViolations  metric.Int64Counter
	AddedLatency      *Histogram
	ParseFailures     metric.Int64Counter
	WatchdogActions   metric.Int64Counter

	meter metric.Meter

	mu       sync.RWMutex
	addOpts  map[setKey][]metric.AddOption
	recOpts  map[setKey][]metric.RecordOption
	noAdd    []metric.AddOption
	noRecord []metric.RecordOption

	// lockguard.statements is counted in plain atomics (one add per
	// statement on the hot path) and read at collection.
	stmtMu sync.RWMutex
	stmts  map[setKey]*StatementCounter
}

// StatementCounter counts statements of one class and decision.
type StatementCounter struct {
	n   atomic.Int64
	set attribute.Set
}

// Add counts n statements.
func (c *StatementCounter) Add(n int64) { c.n.Add(n) }

// setKey names a cached attribute set: an instrument's label values.
type setKey struct{ kind, a, b, c string }

// NewMetrics creates the instruments on meter.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{meter: meter, addOpts: map[setKey][]metric.AddOption{}, recOpts: map[setKey][]metric.RecordOption{},
		stmts: map[setKey]*StatementCounter{}}
	var errs []error
	f64h := func(name, unit, desc string, b []float64) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(b...))
		errs = append(errs, err)
		return h
	}
	i64c := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	i64u := func(name, unit, desc string) metric.Int64UpDownCounter {
		c, err := meter.Int64UpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	m.OperationDuration = newHistogram(MetricOperationDuration, "s", "Duration of database client operations: one sync point (a Query, or an extended-protocol batch up to Sync) from its first byte reaching lockguard to PostgreSQL's ReadyForQuery.", OperationBuckets)
	m.ConnectionCount = i64u(MetricConnectionCount, "{connection}", "Upstream connections lockguard holds to PostgreSQL (session mode: one per client session), by state.")
	m.ClientConns = i64u(MetricClientConnections, "{connection}", "Client sessions connected through lockguard (after authentication).")
	var err error
	m.Statements, err = meter.Int64ObservableCounter(MetricStatements, metric.WithUnit("{statement}"),
		metric.WithDescription("Statements lockguard forwarded or refused, by class and guard decision."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			m.stmtMu.RLock()
			defer m.stmtMu.RUnlock()
			for _, c := range m.stmts {
				o.Observe(c.n.Load(), metric.WithAttributeSet(c.set))
			}
			return nil
		}))
	errs = append(errs, err)
	m.DDLOutcomes = i64c(MetricDDLOutcomes, "{statement}", "Outcomes of DDL that lockguard protected with a lock timeout.")
	m.LockWait = f64h(MetricLockWait, "s", "How long each attempt of a protected DDL ran before it got its lock and finished, or gave up.", LockWaitBuckets)
	m.HoldDuration = f64h(MetricHoldDuration, "s", "How long statements were held in lockguard because their lock would have queued, by outcome.", LockWaitBuckets)
	m.Shed = i64c(MetricShed, "{statement}", "Statements lockguard refused with 55P03 instead of letting them queue behind a lock, by reason.")
	m.Retries = i64c(MetricRetries, "{retry}", "Retries of DDL after its lock timeout or a yield.")
	m.PolicyViolations = i64c(MetricPolicyViolations, "{violation}", "Policy findings that warned or blocked, by rule.")
	m.AddedLatency = newHistogram(MetricAddedLatency, "s", "Time client bytes spent inside lockguard before being written to PostgreSQL (guard decision, admission hold and injected statements included).", AddedLatencyBuckets)
	m.ParseFailures = i64c(MetricParseFailures, "{statement}", "Statements lockguard's parser could not parse, by what was done with them.")
	m.WatchdogActions = i64c(MetricWatchdogActions, "{action}", "Watchdog actions against sessions blocking others.")
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) addOpt(k setKey, kv ...attribute.KeyValue) []metric.AddOption {
	return cachedOpt(&m.mu, m.addOpts, k, m.noAdd, func(s attribute.Set) metric.AddOption { return metric.WithAttributeSet(s) }, kv)
}

func (m *Metrics) recOpt(k setKey, kv ...attribute.KeyValue) []metric.RecordOption {
	return cachedOpt(&m.mu, m.recOpts, k, m.noRecord, func(s attribute.Set) metric.RecordOption { return metric.WithAttributeSet(s) }, kv)
}

// cachedOpt returns the options for the attribute set named k, building and
// keeping them the first time (at most maxCachedSets*8 per kind; beyond that
// none, the attribute-less series).
func cachedOpt[O any](mu *sync.RWMutex, cache map[setKey][]O, k setKey, none []O, mk func(attribute.Set) O, kv []attribute.KeyValue) []O {
	mu.RLock()
	o, ok := cache[k]
	mu.RUnlock()
	if ok {
		return o
	}
	mu.Lock()
	defer mu.Unlock()
	if o, ok := cache[k]; ok {
		return o
	}
	if len(cache) >= maxCachedSets*8 {
		return none
	}
	o = []O{mk(attrSet(kv...))}
	cache[k] = o
	return o
}

// Upstream identifies the server and database an operation ran against.
type Upstream struct {
	Host      string
	Port      int
	Namespace string // the database
}

// OperationSeries returns the series of db.client.operation.duration for
// operations on u that ended with sqlstate ("" for success). Callers keep the
// success series per session.
func (m *Metrics) OperationSeries(u Upstream, sqlstate string) *HistSeries {
	if sqlstate != "" && m.OperationDuration.len() >= maxCachedSets {
		sqlstate = "_OTHER"
	}
	return m.OperationDuration.Series(setKey{"op", u.Host + ":" + strconv.Itoa(u.Port) + "/" + u.Namespace, sqlstate, ""},
		operationAttrs(u, sqlstate)...)
}

// operationAttrs are the attributes of db.client.operation.duration.
func operationAttrs(u Upstream, sqlstate string) []attribute.KeyValue {
	kv := []attribute.KeyValue{semconv.DBSystemNamePostgreSQL, semconv.DBNamespace(u.Namespace),
		semconv.ServerAddress(u.Host), semconv.ServerPort(u.Port)}
	if sqlstate != "" {
		kv = append(kv, semconv.DBResponseStatusCode(sqlstate), semconv.ErrorTypeKey.String(sqlstate))
	}
	return kv
}

// histograms returns the Histograms histProducer exports.
func (m *Metrics) histograms() []*Histogram {
	return []*Histogram{m.OperationDuration, m.AddedLatency}
}

// ConnectionOpts returns the add options of the connection counters for u.
func (m *Metrics) ConnectionOpts(u Upstream) (pool, clients []metric.AddOption) {
	name := u.Host + ":" + strconv.Itoa(u.Port) + "/" + u.Namespace
	pool = m.addOpt(setKey{"pool", name, "", ""},
		attribute.String("db.client.connection.pool.name", name), attribute.String("db.client.connection.state", "used"))
	clients = m.addOpt(setKey{"clients", "", "", ""})
	return pool, clients
}

// Statement counts n statements of class with decision.
func (m *Metrics) Statement(_ context.Context, class, decision string, n int64) {
	m.StatementCounter(class, decision).Add(n)
}

// StatementCounter returns the counter of statements of class with
// decision, for callers that count on a hot path.
func (m *Metrics) StatementCounter(class, decision string) *StatementCounter {
	return loadOrCreate(&m.stmtMu, m.stmts, setKey{"stmt", class, decision, ""}, func() *StatementCounter {
		return &StatementCounter{set: attrSet(AttrClass.String(class), AttrDecision.String(decision))}
	})
}

// loadOrCreate returns cache[k], creating it with mk the first time: a read
// lock on the way that finds it, the write lock only to create it.
func loadOrCreate[V any](mu *sync.RWMutex, cache map[setKey]*V, k setKey, mk func() *V) *V {
	mu.RLock()
	v := cache[k]
	mu.RUnlock()
	if v != nil {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v = cache[k]; v == nil {
		v = mk()
		cache[k] = v
	}
	return v
}

// DDL counts one outcome of a protected DDL: landed, landed_after_retry,
// gave_up, canceled, failed, yielded.
func (m *Metrics) DDL(ctx context.Context, outcome string) {
	m.DDLOutcomes.Add(ctx, 1, m.addOpt(setKey{"ddl", outcome, "", ""}, AttrOutcome.String(outcome))...)
}

// LockWaited records one attempt of a protected DDL; outcome is got or
// timeout.
func (m *Metrics) LockWaited(ctx context.Context, seconds float64, outcome string) {
	m.LockWait.Record(ctx, seconds, m.recOpt(setKey{"wait", outcome, "", ""}, AttrOutcome.String(outcome))...)
}

// Held records how long a statement was held; outcome is admitted or shed.
func (m *Metrics) Held(ctx context.Context, seconds float64, outcome string) {
	m.HoldDuration.Record(ctx, seconds, m.recOpt(setKey{"hold", outcome, "", ""}, AttrOutcome.String(outcome))...)
}

// Shedded counts one shed statement; reason is lock_held, lock_awaited,
// hold_limit, session_ended or canceled (the client sent a CancelRequest).
func (m *Metrics) Shedded(ctx context.Context, reason string) {
	m.Shed.Add(ctx, 1, m.addOpt(setKey{"shed", reason, "", ""}, AttrReason.String(reason))...)
}

// Retry counts one DDL retry.
func (m *Metrics) Retry(ctx context.Context) { m.Retries.Add(ctx, 1) }

// Violation counts one policy finding; action is warn or block.
func (m *Metrics) Violation(ctx context.Context, rule, action string) {
	m.PolicyViolations.Add(ctx, 1, m.addOpt(setKey{"rule", rule, action, ""}, AttrRule.String(rule), AttrAction.String(action))...)
}

// ParseFailed counts a statement the parser rejected; outcome is relayed or
// refused.
func (m *Metrics) ParseFailed(ctx context.Context, outcome string) {
	m.ParseFailures.Add(ctx, 1, m.ParseFailedOpts(outcome)...)
}

// ParseFailedOpts returns the add options ParseFailed uses.
func (m *Metrics) ParseFailedOpts(outcome string) []metric.AddOption {
	return m.addOpt(setKey{"parse", outcome, "", ""}, AttrOutcome.String(outcome))
}

// Watchdog counts one watchdog action: warn, cancel or terminate.
func (m *Metrics) Watchdog(ctx context.Context, action string) {
	m.WatchdogActions.Add(ctx, 1, m.addOpt(setKey{"wd", action, "", ""}, AttrAction.String(action))...)
}
