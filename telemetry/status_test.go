package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockguard/lockguard/guard"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func users() guard.RelName    { return guard.RelName{Schema: "public", Name: "users"} }
func orders() guard.RelName   { return guard.RelName{Schema: "public", Name: "orders"} }
func products() guard.RelName { return guard.RelName{Schema: "public", Name: "products"} }

// incidentBoard is the incident: pid 100 read users in an open transaction
// (ACCESS SHARE, which the monitor does not report), pid 200 forwarded by
// lockguard runs ALTER TABLE orders DROP CONSTRAINT … and holds ACCESS
// EXCLUSIVE on orders while it waits for it on users, pid 300 (a session
// that bypasses lockguard) queues behind 200, and pid 400 holds SHARE on
// an unrelated table.
func incidentBoard() *guard.Board {
	b := &guard.Board{}
	ddl := "ALTER TABLE orders DROP CONSTRAINT orders_user_fk"
	b.SetMonitored([]guard.Hazard{
		{Rel: users(), Mode: guard.AccessExclusive, PID: 200, Source: "monitor", State: "active", Query: ddl,
			Application: "migrate", User: "deploy", Client: "10.0.0.2", XactStart: t0.Add(-5 * time.Second),
			WaitStart: t0.Add(-4 * time.Second), BlockedBy: []int{100}},
		{Rel: orders(), Mode: guard.AccessExclusive, Granted: true, PID: 200, Source: "monitor", State: "active", Query: ddl,
			Application: "migrate", User: "deploy", Client: "10.0.0.2", XactStart: t0.Add(-5 * time.Second)},
		{Rel: users(), Mode: guard.AccessShare, PID: 300, Source: "monitor", State: "active", Query: "SELECT * FROM users WHERE id = $1",
			Application: "cron", User: "app", Client: "10.0.0.3", XactStart: t0.Add(-time.Second),
			WaitStart: t0.Add(-time.Second), BlockedBy: []int{200}},
		{Rel: products(), Mode: guard.Share, Granted: true, PID: 400, Source: "monitor", State: "idle in transaction",
			Query: "LOCK products IN SHARE MODE", XactStart: t0.Add(-time.Minute)},
	})
	// The same DDL as lockguard itself reports it, with its trace: both
	// locks pending until it completes.
	own := guard.Hazard{Mode: guard.AccessExclusive, PID: 200, Source: "proxy", Query: ddl,
		WaitStart: t0.Add(-4 * time.Second), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	u, o := own, own
	u.Rel, o.Rel = users(), orders()
	b.Add([]guard.Hazard{u, o})
	return b
}

func TestLockTree(t *testing.T) {
	b := incidentBoard()
	evs := NewEvents(100)
	shed := func(at time.Duration, pid int, blocker int) {
		evs.Add(Event{Time: t0.Add(at), Kind: KindShed, Relation: "public.users", LockMode: "ACCESS SHARE", PID: pid,
			Client: "10.0.0.9", Application: "web", User: "app", Statement: "SELECT * FROM users WHERE id = $1",
			BlockerPID: blocker, Wait: 25 * time.Millisecond})
	}
	shed(-2*time.Minute, 501, 200) // too old to show
	shed(-3*time.Second, 501, 200)
	shed(-2*time.Second, 502, 200)
	shed(-time.Second, 501, 200)
	shed(-time.Second, 503, 999) // its blocker is gone
	evs.Add(Event{Time: t0.Add(-time.Second), Kind: KindHeld, Relation: "public.users", LockMode: "ROW EXCLUSIVE", PID: 504,
		Statement: "UPDATE users SET name = $1 WHERE id = $2", BlockerPID: 200, Wait: 40 * time.Millisecond, TraceID: "abc"})
	evs.Add(Event{Time: t0.Add(-time.Second), Kind: KindWarned, Relation: "public.users", PID: 200, BlockerPID: 200})

	var asked []int
	s := &Status{Hazards: b.Snapshot, Events: evs, Now: func() time.Time { return t0 },
		Sessions: func(ctx context.Context, pids []int) ([]Session, error) {
			asked = append(asked, pids...)
			return []Session{{PID: 100, State: "idle in transaction", Query: "SELECT count(*) FROM users",
				Application: "report", User: "analyst", Client: "10.0.0.1", XactStart: t0.Add(-time.Minute)}}, nil
		}}
	tree := s.Locks(context.Background())

	if tree.Backends != 4 || tree.Waiting != 2 {
		t.Errorf("backends %d waiting %d, want 4 and 2", tree.Backends, tree.Waiting)
	}
	if fmt.Sprint(asked) != "[100]" {
		t.Errorf("Sessions asked about %v, want only the blocker off the board [100]", asked)
	}
	if got := shape(tree.Roots); got != "100(200(300)) 400" {
		t.Fatalf("tree %q, want root blocker 100 → DDL 200 → queued 300, and 400 alone", got)
	}
	root := tree.Roots[0]
	if root.OnBoard || root.Application != "report" || root.Client != "10.0.0.1" || root.XactAgeMS != 60000 || root.State != "idle in transaction" {
		t.Errorf("root blocker not described from Sessions: %+v", root)
	}
	ddl := root.Children[0]
	if !ddl.Waiting || ddl.Granted || ddl.Relation != "public.users" || ddl.LockMode != "ACCESS EXCLUSIVE" || ddl.WaitMS != 4000 {
		t.Errorf("DDL node's main lock: %+v", ddl)
	}
	if ddl.Source != "proxy" || ddl.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ddl.Application != "migrate" || ddl.Client != "10.0.0.2" {
		t.Errorf("DDL node merged from monitor and proxy: source %q trace %q app %q client %q", ddl.Source, ddl.TraceID, ddl.Application, ddl.Client)
	}
	if len(ddl.Locks) != 2 || ddl.Locks[1].Relation != "public.orders" || !ddl.Locks[1].Granted {
		t.Errorf("DDL locks: %+v", ddl.Locks)
	}
	if fmt.Sprint(ddl.BlockedBy) != "[100]" || ddl.XactAgeMS != 5000 {
		t.Errorf("DDL blocked by %v, xact age %v", ddl.BlockedBy, ddl.XactAgeMS)
	}
	// Statements held or shed because of the DDL's pending lock hang under it.
	if ddl.AffectedTotal != 4 || len(ddl.Affected) != 2 {
		t.Fatalf("affected under the DDL: total %d, groups %+v", ddl.AffectedTotal, ddl.Affected)
	}
	var sh, held Affected
	for _, a := range ddl.Affected {
		switch a.Kind {
		case KindShed:
			sh = a
		case KindHeld:
			held = a
		}
	}
	if sh.Count != 3 || sh.Sessions != 2 || sh.PID != 501 || sh.Client != "10.0.0.9" || sh.LongestWaitMS != 25 || !sh.Last.Equal(t0.Add(-time.Second)) {
		t.Errorf("shed group: %+v", sh)
	}
	if held.Count != 1 || held.PID != 504 || held.TraceID != "abc" || held.LockMode != "ROW EXCLUSIVE" {
		t.Errorf("held group: %+v", held)
	}
	if root.AffectedTotal != 0 || tree.Roots[1].AffectedTotal != 0 {
		t.Error("affected statements under the wrong node")
	}
	// The page asks for the tree and the incidents together: one lookup.
	// Three incidents: the shed two minutes ago, the current one (rooted
	// at the report, described), and the one whose blocker 999 is gone.
	incs := s.Incidents(context.Background())
	if len(incs) != 3 || incs[1].Root.PID != 100 || incs[1].Root.Application != "report" || !incs[1].Ongoing ||
		incs[0].Root.PID != 999 || incs[2].Ongoing {
		for _, i := range incs {
			t.Logf("%+v root %+v", i, i.Root)
		}
		t.Error("incidents of the lock tree's events")
	}
	if len(asked) != 1 {
		t.Errorf("Sessions called %d times within a second", len(asked))
	}

	// The JSON a page reads.
	js, err := json.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"pid":200`, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`, `"lock_mode":"ACCESS EXCLUSIVE"`,
		`"relation":"public.users"`, `"waiting":true`, `"on_board":false`, `"affected_total":4`, `"xact_age_ms":60000`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("JSON lacks %s: %s", want, js)
		}
	}
}

// shape renders a tree as "pid(children) pid".
func shape(ns []*LockNode) string {
	var parts []string
	for _, n := range ns {
		p := fmt.Sprint(n.PID)
		if len(n.Children) > 0 {
			p += "(" + shape(n.Children) + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func TestLockTreeShapes(t *testing.T) {
	wait := func(pid int, rel guard.RelName, by ...int) guard.Hazard {
		return guard.Hazard{Rel: rel, Mode: guard.AccessExclusive, PID: pid, Source: "monitor", BlockedBy: by,
			WaitStart: t0.Add(-time.Duration(pid) * time.Millisecond)}
	}
	hold := func(pid int, rel guard.RelName) guard.Hazard {
		return guard.Hazard{Rel: rel, Mode: guard.Share, PID: pid, Granted: true, Source: "monitor"}
	}
	for _, tc := range []struct {
		name string
		hs   []guard.Hazard
		want string
	}{
		{"empty", nil, ""},
		{"own DDL, no blocker known", []guard.Hazard{{Rel: users(), Mode: guard.AccessExclusive, PID: 7, Source: "proxy"}}, "7"},
		{"holder with two waiters", []guard.Hazard{hold(1, users()), wait(3, users(), 1), wait(2, users(), 1)}, "1(3 2)"},
		// A writer behind both the holder and the pending DDL goes under
		// the DDL: that is the queue it waits in.
		{"queue behind a pending DDL", []guard.Hazard{hold(1, users()), wait(2, users(), 1), wait(3, users(), 1, 2)}, "1(2(3))"},
		{"queue behind a pending DDL with a higher pid", []guard.Hazard{hold(1, users()), wait(9, users(), 1), wait(3, users(), 1, 9)}, "1(9(3))"},
		{"deadlock", []guard.Hazard{wait(1, users(), 2), wait(2, orders(), 1)}, "1(2)"},
		{"two incidents", []guard.Hazard{wait(5, orders(), 4), wait(2, users(), 1)}, "1(2) 4(5)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &guard.Board{}
			b.SetMonitored(tc.hs)
			s := &Status{Hazards: b.Snapshot, Now: func() time.Time { return t0 }}
			if got := shape(s.Locks(context.Background()).Roots); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	// No board at all.
	if tree := (&Status{}).Locks(context.Background()); tree.Roots == nil || len(tree.Roots) != 0 {
		t.Errorf("nil Hazards: %+v", tree)
	}
}

func TestIncidents(t *testing.T) {
	evs := NewEvents(100)
	add := func(at time.Duration, ev Event) { ev.Time = t0.Add(at); evs.Add(ev) }
	// Incident 1 (over): a report (100) blocks a DDL (200) lockguard
	// forwarded; reads queue behind the DDL and are shed; the DDL yields
	// and retries; the watchdog reports the report; the DDL lands.
	ddl := "ALTER TABLE orders DROP CONSTRAINT orders_user_fk"
	add(-5*time.Minute, Event{Kind: KindTimeoutInjected, PID: 200, Relation: "public.orders", Statement: ddl, TraceID: "t1"})
	add(-5*time.Minute+time.Second, Event{Kind: KindShed, PID: 501, Relation: "public.users", BlockerPID: 200, Wait: 25 * time.Millisecond})
	add(-5*time.Minute+2*time.Second, Event{Kind: KindShed, PID: 502, Relation: "public.users", BlockerPID: 200, Wait: 30 * time.Millisecond})
	add(-5*time.Minute+2*time.Second, Event{Kind: KindHeld, PID: 501, Relation: "public.orders", BlockerPID: 200, Wait: 10 * time.Millisecond})
	add(-5*time.Minute+3*time.Second, Event{Kind: KindYielded, PID: 200, Relation: "public.users", BlockerPID: 100, Statement: ddl, TraceID: "t1"})
	add(-5*time.Minute+4*time.Second, Event{Kind: KindWatchdogWarn, PID: 100, Relation: "public.users", Client: "10.0.0.1", Application: "report", Wait: time.Minute})
	add(-5*time.Minute+5*time.Second, Event{Kind: KindRetried, PID: 200, Relation: "public.users", BlockerPID: 100, Attempts: 2, Statement: ddl})
	add(-5*time.Minute+8*time.Second, Event{Kind: KindLanded, PID: 200, Relation: "public.orders", Statement: ddl, Attempts: 3})
	// Unrelated: a policy warning on another table starts no incident.
	add(-3*time.Minute, Event{Kind: KindWarned, PID: 300, Relation: "public.products", Rule: "add-column-default"})
	// Incident 2 (ongoing): pid 400 holds SHARE on products; writes are shed.
	add(-2*time.Second, Event{Kind: KindShed, PID: 601, Relation: "public.products", BlockerPID: 400})
	add(-time.Second, Event{Kind: KindShed, PID: 601, Relation: "public.products", BlockerPID: 400})
	// Incident 3: a shed whose blocker was not known, 40 s after incident 1
	// on the same table: a separate incident by relation.
	add(-4*time.Minute+40*time.Second, Event{Kind: KindShed, PID: 700, Relation: "public.users"})

	b := &guard.Board{}
	b.SetMonitored([]guard.Hazard{{Rel: products(), Mode: guard.Share, Granted: true, PID: 400, Source: "monitor", Application: "batch"}})
	s := &Status{Hazards: b.Snapshot, Events: evs, Now: func() time.Time { return t0 }}
	incs := s.Incidents(context.Background())
	if len(incs) != 3 {
		for _, i := range incs {
			t.Logf("%+v", i)
		}
		t.Fatalf("%d incidents, want 3", len(incs))
	}
	cur, byRel, past := incs[0], incs[1], incs[2]
	if !cur.Ongoing || cur.Root == nil || cur.Root.PID != 400 || cur.Root.Application != "batch" || cur.Counts[KindShed] != 2 || cur.Sessions != 1 {
		t.Errorf("ongoing incident: %+v root %+v", cur, cur.Root)
	}
	if byRel.Ongoing || byRel.Root != nil || fmt.Sprint(byRel.Relations) != "[public.users]" || byRel.Events != 1 {
		t.Errorf("incident known by its relation only: %+v", byRel)
	}
	if past.Ongoing {
		t.Error("past incident marked ongoing")
	}
	if past.Root == nil || past.Root.PID != 100 || past.Root.Application != "report" {
		t.Errorf("root blocker of the past incident: %+v (blockers %v)", past.Root, past.Blockers)
	}
	if fmt.Sprint(past.Blockers) != "[100 200]" || fmt.Sprint(past.Relations) != "[public.orders public.users]" {
		t.Errorf("blockers %v relations %v", past.Blockers, past.Relations)
	}
	want := map[string]int{KindTimeoutInjected: 1, KindShed: 2, KindHeld: 1, KindYielded: 1, KindWatchdogWarn: 1, KindRetried: 1, KindLanded: 1}
	if fmt.Sprint(past.Counts) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", past.Counts, want)
	}
	// Affected: 501 and 502 (the blockers 100 and 200 are not victims).
	if past.Sessions != 2 || past.LongestWaitMS != 30 || !past.Start.Equal(t0.Add(-5*time.Minute)) || !past.End.Equal(t0.Add(-5*time.Minute+8*time.Second)) {
		t.Errorf("sessions %d longest %v start %v end %v", past.Sessions, past.LongestWaitMS, past.Start, past.End)
	}
	if fmt.Sprint(past.DDL) != "["+ddl+"]" || fmt.Sprint(past.TraceIDs) != "[t1]" {
		t.Errorf("ddl %q traces %v", past.DDL, past.TraceIDs)
	}

	// Events about one blocker further apart than IncidentGap are two incidents.
	evs = NewEvents(10)
	evs.Add(Event{Time: t0.Add(-2 * time.Minute), Kind: KindShed, BlockerPID: 9, Relation: "public.users"})
	evs.Add(Event{Time: t0.Add(-2*time.Minute + IncidentGap + time.Second), Kind: KindShed, BlockerPID: 9, Relation: "public.users"})
	s = &Status{Events: evs, Now: func() time.Time { return t0 }}
	if incs := s.Incidents(context.Background()); len(incs) != 2 || incs[0].Root.PID != 9 {
		t.Errorf("gap did not split: %d incidents", len(incs))
	}
}

// TestIncidentRemembersTree: a shed names only the DDL it queued behind;
// the incident is still told by the root blocker seen in the lock tree.
func TestIncidentRemembersTree(t *testing.T) {
	b := incidentBoard()
	evs := NewEvents(10)
	now := t0
	s := &Status{Hazards: b.Snapshot, Events: evs, Now: func() time.Time { return now }}
	evs.Add(Event{Time: t0, Kind: KindShed, PID: 501, Relation: "public.users", BlockerPID: 200})
	if incs := s.Incidents(context.Background()); len(incs) != 1 || incs[0].Root.PID != 100 || !incs[0].Ongoing {
		t.Fatalf("while the tree is live: %+v", incs[0])
	}
	b.SetMonitored(nil)
	b = &guard.Board{}
	s.Hazards = b.Snapshot
	now = t0.Add(time.Minute)
	incs := s.Incidents(context.Background())
	if len(incs) != 1 || incs[0].Root.PID != 100 || incs[0].Ongoing {
		t.Fatalf("after the locks cleared: %+v", incs[0])
	}
}

func TestEventsRing(t *testing.T) {
	e := NewEvents(4)
	if got := e.Recent(10); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := 1; i <= 6; i++ {
		e.Add(Event{Kind: KindShed, PID: i})
	}
	got := e.Recent(0)
	if len(got) != 4 || e.Len() != 4 {
		t.Fatalf("ring of 4 holds %d (Len %d)", len(got), e.Len())
	}
	for i, ev := range got {
		if ev.PID != 6-i {
			t.Errorf("Recent[%d].PID = %d, want %d (newest first)", i, ev.PID, 6-i)
		}
		if ev.Time.IsZero() {
			t.Error("Add did not stamp the time")
		}
	}
	if got := e.Recent(2); len(got) != 2 || got[0].PID != 6 || got[1].PID != 5 {
		t.Errorf("Recent(2) = %+v", got)
	}
	var nilRing *Events
	nilRing.Add(Event{}) // must not panic
	if nilRing.Recent(3) != nil || nilRing.Len() != 0 {
		t.Error("nil ring not empty")
	}
	if NewEvents(0).Len() != 0 || len(NewEvents(0).slots) != DefaultEvents {
		t.Error("NewEvents(0) is not the default size")
	}
	js, _ := json.Marshal(Event{Time: t0, Kind: KindHeld, Wait: 1500 * time.Microsecond})
	if !strings.Contains(string(js), `"wait_ms":1.5`) || strings.Contains(string(js), `"Wait"`) {
		t.Errorf("event JSON: %s", js)
	}
}

// TestEventsConcurrent: writers never block each other or readers, and a
// reader sees each writer's events in order, at most the ring's size.
func TestEventsConcurrent(t *testing.T) {
	const writers, each, size = 8, 2000, 64
	e := NewEvents(size)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readErr error
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got := e.Recent(0)
			if len(got) > size {
				readErr = fmt.Errorf("Recent returned %d > %d", len(got), size)
				return
			}
			last := map[int]int{}
			for _, ev := range got { // newest first: per writer, Attempts decreases
				if prev, ok := last[ev.PID]; ok && ev.Attempts >= prev {
					readErr = fmt.Errorf("writer %d: event %d after %d", ev.PID, ev.Attempts, prev)
					return
				}
				last[ev.PID] = ev.Attempts
			}
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e.Add(Event{Kind: KindShed, PID: w, Attempts: i})
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if got := e.Recent(0); len(got) != size {
		t.Fatalf("after %d adds the ring holds %d, want %d", writers*each, len(got), size)
	}
}

func TestStatusHTTP(t *testing.T) {
	evs := NewEvents(500)
	for i := 0; i < 300; i++ {
		evs.Add(Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: KindShed, PID: 1000 + i, BlockerPID: 200,
			Relation: "public.users", Wait: 25 * time.Millisecond})
	}
	a := &Admin{Token: "s3cret", Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("lockguard_up 1\n"))
	}), Status: &Status{Hazards: incidentBoard().Snapshot, Events: evs, Now: func() time.Time { return t0 },
		Policy: func() any {
			v, err := PolicyView(guard.PolicyConfig{Preset: "strict"}, map[string]any{"lock-timeout": "2s"})
			if err != nil {
				t.Error(err)
			}
			return v
		}}}
	h := a.Handler()
	get := func(path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, path := range []string{"/api/locks", "/api/events", "/api/incidents", "/api/policy", "/metrics"} {
		if c := get(path, "").Code; c != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d", path, c)
		}
		if c := get(path, "wrong").Code; c != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", path, c)
		}
		if w := get(path, "s3cret"); w.Code != http.StatusOK {
			t.Errorf("%s with the token: %d %s", path, w.Code, w.Body)
		}
	}
	// The page holds no data and loads without the token (a browser cannot
	// send one when it navigates); its script sends it.
	page := get("/", "")
	if page.Code != 200 || !strings.Contains(page.Body.String(), `id="lock-tree"`) ||
		!strings.Contains(page.Body.String(), `"Authorization"`) || !strings.Contains(page.Body.String(), "#token") {
		t.Fatalf("page: %d", page.Code)
	}
	csp := page.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'sha256-") || !strings.Contains(csp, "connect-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP: %s", csp)
	}
	// Self-contained: nothing is loaded from anywhere else.
	for _, ref := range []string{"http://", "https://", "src=", "<link"} {
		if strings.Contains(page.Body.String(), ref) {
			t.Errorf("page refers to an external resource (%q)", ref)
		}
	}
	if c := get("/nope", "s3cret").Code; c != http.StatusNotFound {
		t.Errorf("/nope: %d", c)
	}

	var ev struct{ Events []map[string]any }
	decode(t, get("/api/events?limit=5", "s3cret"), &ev)
	if len(ev.Events) != 5 || ev.Events[0]["pid"].(float64) != 1299 || ev.Events[0]["wait_ms"].(float64) != 25 {
		t.Errorf("events?limit=5: %v", ev.Events)
	}
	decode(t, get("/api/events", "s3cret"), &ev)
	if len(ev.Events) != defaultLimit {
		t.Errorf("default limit: %d events", len(ev.Events))
	}
	decode(t, get("/api/events?limit=100000", "s3cret"), &ev)
	if len(ev.Events) != 300 {
		t.Errorf("limit beyond the ring: %d events", len(ev.Events))
	}
	for _, bad := range []string{"0", "-1", "x", "1.5"} {
		if c := get("/api/events?limit="+bad, "s3cret").Code; c != http.StatusBadRequest {
			t.Errorf("limit=%s: %d", bad, c)
		}
	}
	var inc struct{ Incidents []map[string]any }
	decode(t, get("/api/incidents?limit=1", "s3cret"), &inc)
	if len(inc.Incidents) != 1 || inc.Incidents[0]["sessions"].(float64) != 300 {
		t.Errorf("incidents: %v", inc.Incidents)
	}
	var locks LockTree
	decode(t, get("/api/locks", "s3cret"), &locks)
	if shape(locks.Roots) != "100(200(300)) 400" {
		t.Errorf("locks JSON tree: %s", shape(locks.Roots))
	}
	var pol struct {
		Preset   string
		Settings map[string]any
		Rules    []struct{ ID, Action string }
	}
	decode(t, get("/api/policy", "s3cret"), &pol)
	blocks := 0
	for _, r := range pol.Rules {
		if r.Action == "block" {
			blocks++
		}
	}
	if pol.Preset != "strict" || blocks == 0 || pol.Settings["lock-timeout"] != "2s" {
		t.Errorf("policy: preset %q, %d blocking rules, settings %v", pol.Preset, blocks, pol.Settings)
	}

	// Without a token everything is open; without a Status no page.
	open := (&Admin{Status: &Status{}}).Handler()
	w := httptest.NewRecorder()
	open.ServeHTTP(w, httptest.NewRequest("GET", "/api/locks", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"roots": []`) {
		t.Errorf("open /api/locks with nothing: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	open.ServeHTTP(w, httptest.NewRequest("GET", "/api/policy", nil))
	if strings.TrimSpace(w.Body.String()) != "null" {
		t.Errorf("no policy: %s", w.Body)
	}
	w = httptest.NewRecorder()
	(&Admin{}).Handler().ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("page without Status: %d", w.Code)
	}
}

func decode(t *testing.T, w *httptest.ResponseRecorder, v any) {
	t.Helper()
	if w.Code != 200 {
		t.Fatalf("HTTP %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
}

// TestStatusConcurrent: the handlers run concurrently with each other and
// with Add (run with -race).
func TestStatusConcurrent(t *testing.T) {
	b := incidentBoard()
	evs := NewEvents(256)
	s := &Status{Hazards: b.Snapshot, Events: evs,
		Sessions: func(ctx context.Context, pids []int) ([]Session, error) { return []Session{{PID: 100, User: "u"}}, nil }}
	h := (&Admin{Status: s}).Handler()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				evs.Add(Event{Kind: KindShed, PID: 1000 + i, BlockerPID: 200, Relation: "public.users"})
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for _, path := range []string{"/api/locks", "/api/incidents", "/api/events?limit=10"} {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
					if w.Code != 200 {
						t.Errorf("%s: %d", path, w.Code)
					}
				}
			}
		}()
	}
	wg.Wait()
}
