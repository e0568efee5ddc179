package telemetry

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockguard/lockguard/guard"
)

// Status serves the live lock tree, recent events and incidents, and the
// active policy: the JSON under /api/ and the status page at /. It only
// reads; every field is optional.
type Status struct {
	// Hazards returns the board's current snapshot (guard.Board.Snapshot);
	// nil means none. Called once per /api/locks or /api/incidents request.
	Hazards func() *guard.Hazards
	// Events is the ring the guard records its actions in; nil means none.
	Events *Events
	// Policy returns the active policy as a JSON-able value; nil means none.
	Policy func() any
	// Now returns the time; nil means time.Now.
	Now func() time.Time
	// Sessions, when set, describes backends that appear on the board only
	// as blockers — typically a transaction that read the table and so
	// holds ACCESS SHARE, which the monitor does not report — so the page
	// can show who they are. It is called with their pids while a request
	// for /api/locks is served, under a one-second deadline; it must honour
	// ctx. nil (or an error) leaves such a node with its pid alone.
	Sessions func(ctx context.Context, pids []int) ([]Session, error)

	mu          sync.Mutex
	links       map[int]link // backend → the root blocker it was last seen under
	sessions    []Session    // the last answer of Sessions…
	sessionsKey string       // …for these pids…
	sessionsAt  time.Time    // …at this time
}

// Session describes one backend (from pg_stat_activity).
type Session struct {
	PID         int
	State       string
	Query       string // literals replaced
	Application string
	User        string
	Client      string
	XactStart   time.Time // zero when not in a transaction
}

type link struct {
	root int
	seen time.Time
	node *LockNode // the root's description, when this is a root
}

// Tuning of what the page shows.
const (
	// AffectedWindow is how far back the statements held or shed because
	// of a node of the lock tree are shown under it.
	AffectedWindow = 60 * time.Second
	// IncidentGap ends an incident: events about the same root blocker
	// further apart than this belong to different incidents.
	IncidentGap = 30 * time.Second
	// incidentLinger keeps an incident "ongoing" this long after its last
	// event even when its blocker is off the board (the monitor polls).
	incidentLinger = 5 * time.Second
	sessionsTTL    = 900 * time.Millisecond
	maxAffected    = 10   // groups of held/shed statements per node
	maxNodes       = 1000 // nodes in one lock tree
	defaultLimit   = 100
)

func (s *Status) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Status) hazards() []guard.Hazard {
	if s.Hazards == nil {
		return nil
	}
	return s.Hazards().All()
}

// LockTree is the JSON of /api/locks.
type LockTree struct {
	Now time.Time `json:"now"`
	// Roots are the root blockers: backends that hold a lock others wait
	// for (or a strong lock that makes lockguard shed), and waiters that
	// wait for nobody on the board. Children wait for their parent.
	Roots []*LockNode `json:"roots"`
	// Backends counts the distinct backends in the tree; Waiting those
	// waiting for a lock.
	Backends  int  `json:"backends"`
	Waiting   int  `json:"waiting"`
	Truncated bool `json:"truncated,omitempty"`
}

// LockNode is one backend in the lock tree. Relation, LockMode, Granted and
// WaitMS describe its main lock: the one it waits for, or else its
// strongest granted one; Locks lists them all.
type LockNode struct {
	PID int `json:"pid"`
	// OnBoard is false for a backend known only because others wait for
	// it (it holds no lock the monitor reports, e.g. ACCESS SHARE).
	OnBoard     bool       `json:"on_board"`
	Source      string     `json:"source,omitempty"` // "proxy" (a DDL lockguard forwarded) or "monitor" (pg_locks)
	Client      string     `json:"client,omitempty"`
	Application string     `json:"application,omitempty"`
	User        string     `json:"user,omitempty"`
	State       string     `json:"state,omitempty"`
	Statement   string     `json:"statement,omitempty"` // literals replaced
	TraceID     string     `json:"trace_id,omitempty"`
	XactStart   *time.Time `json:"xact_start,omitempty"`
	XactAgeMS   float64    `json:"xact_age_ms,omitempty"`
	Relation    string     `json:"relation,omitempty"`
	LockMode    string     `json:"lock_mode,omitempty"`
	Granted     bool       `json:"granted"`
	Waiting     bool       `json:"waiting"`
	WaitMS      float64    `json:"wait_ms,omitempty"`
	Locks       []NodeLock `json:"locks,omitempty"`
	BlockedBy   []int      `json:"blocked_by,omitempty"`
	// Affected groups the statements lockguard held or shed in the last
	// AffectedWindow because of this backend's lock; AffectedTotal counts
	// them all.
	Affected      []Affected  `json:"affected,omitempty"`
	AffectedTotal int         `json:"affected_total,omitempty"`
	Children      []*LockNode `json:"children,omitempty"`

	parents   []int
	parent    int
	waitStart time.Time
}

// NodeLock is one table lock of a backend.
type NodeLock struct {
	Relation string  `json:"relation"`
	LockMode string  `json:"lock_mode"`
	Granted  bool    `json:"granted"`
	WaitMS   float64 `json:"wait_ms,omitempty"`
	Source   string  `json:"source,omitempty"`

	mode guard.LockMode
}

// Affected is a group of statements lockguard held or shed because of one
// backend: same kind, statement and relation.
type Affected struct {
	Kind          string    `json:"kind"`
	Statement     string    `json:"statement,omitempty"`
	Relation      string    `json:"relation,omitempty"`
	LockMode      string    `json:"lock_mode,omitempty"`
	Count         int       `json:"count"`
	Sessions      int       `json:"sessions"` // distinct sessions
	Last          time.Time `json:"last"`
	LongestWaitMS float64   `json:"longest_wait_ms,omitempty"`
	// The most recent one's session.
	PID         int    `json:"pid,omitempty"`
	Client      string `json:"client,omitempty"`
	Application string `json:"application,omitempty"`
	User        string `json:"user,omitempty"`
	TraceID     string `json:"trace_id,omitempty"`

	sessions map[string]bool
}

// Locks builds the lock tree from the current hazards and recent events.
func (s *Status) Locks(ctx context.Context) *LockTree {
	now := s.now()
	tree := buildTree(s.hazards(), now)
	if s.Sessions != nil {
		s.describe(ctx, tree, now)
	}
	var evs []Event
	if s.Events != nil {
		evs = s.Events.Recent(0)
	}
	attachAffected(tree, evs, now)
	s.remember(tree, now)
	return tree
}

// buildTree turns hazards into backends and hangs each waiter under one of
// the backends it waits for.
func buildTree(hs []guard.Hazard, now time.Time) *LockTree {
	nodes := map[int]*LockNode{}
	for _, h := range hs {
		n := nodes[h.PID]
		if n == nil {
			n = &LockNode{PID: h.PID, OnBoard: true}
			nodes[h.PID] = n
		}
		mergeHazard(n, h, now)
	}
	// Blockers that hold nothing the board shows become nodes of their own.
	for _, pid := range sortedPIDs(nodes) {
		for _, b := range nodes[pid].parents {
			if nodes[b] == nil {
				nodes[b] = &LockNode{PID: b}
			}
		}
	}
	tree := &LockTree{Now: now, Roots: []*LockNode{}}
	pids := sortedPIDs(nodes)
	for _, pid := range pids {
		n := nodes[pid]
		finishNode(n)
		tree.Backends++
		if n.Waiting {
			tree.Waiting++
		}
	}
	for _, pid := range pids {
		n := nodes[pid]
		// One parent: prefer a blocker that itself waits (the request
		// ahead in the queue), so chains read root → DDL → queue.
		for _, b := range n.parents {
			if n.parent == 0 || (nodes[b].Waiting && !nodes[n.parent].Waiting) {
				n.parent = b
			}
		}
	}
	for _, pid := range pids {
		if n := nodes[pid]; n.parent != 0 {
			p := nodes[n.parent]
			p.Children = append(p.Children, n)
		}
	}
	visited := map[int]bool{}
	count := 0
	var walk func(n *LockNode)
	walk = func(n *LockNode) {
		visited[n.PID] = true
		count++
		kids := n.Children[:0]
		for _, c := range n.Children {
			if !visited[c.PID] && count < maxNodes {
				kids = append(kids, c)
				walk(c)
			} else if count >= maxNodes {
				tree.Truncated = true
			}
		}
		n.Children = kids
		sort.SliceStable(n.Children, func(i, j int) bool { return earlier(n.Children[i], n.Children[j]) })
	}
	for _, pid := range pids {
		if n := nodes[pid]; n.parent == 0 {
			tree.Roots = append(tree.Roots, n)
		}
	}
	// A cycle (a deadlock PostgreSQL has not broken yet) has no root:
	// start it at its lowest pid.
	for _, pid := range pids {
		if n := nodes[pid]; n.parent != 0 && !reachesRoot(n, nodes) {
			n.parent = 0
			tree.Roots = append(tree.Roots, n)
		}
	}
	for _, r := range tree.Roots {
		if count >= maxNodes {
			tree.Truncated = true
			break
		}
		if !visited[r.PID] {
			walk(r)
		}
	}
	kept := tree.Roots[:0]
	for _, r := range tree.Roots {
		if visited[r.PID] {
			kept = append(kept, r)
		}
	}
	tree.Roots = kept
	sort.SliceStable(tree.Roots, func(i, j int) bool {
		a, b := tree.Roots[i], tree.Roots[j]
		if (len(a.Children) > 0) != (len(b.Children) > 0) {
			return len(a.Children) > 0
		}
		return earlier(a, b)
	})
	return tree
}

// reachesRoot reports whether following parents from n ends at a root.
func reachesRoot(n *LockNode, nodes map[int]*LockNode) bool {
	seen := map[int]bool{}
	for n.parent != 0 {
		if seen[n.PID] {
			return false
		}
		seen[n.PID] = true
		n = nodes[n.parent]
	}
	return true
}

// earlier orders the oldest transaction (or wait) first, then by pid.
func earlier(a, b *LockNode) bool {
	ta, tb := a.waitStart, b.waitStart
	if a.XactStart != nil {
		ta = *a.XactStart
	}
	if b.XactStart != nil {
		tb = *b.XactStart
	}
	if !ta.Equal(tb) {
		if ta.IsZero() || tb.IsZero() {
			return !ta.IsZero()
		}
		return ta.Before(tb)
	}
	return a.PID < b.PID
}

func sortedPIDs(nodes map[int]*LockNode) []int {
	pids := make([]int, 0, len(nodes))
	for pid := range nodes {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// mergeHazard adds one hazard of backend n.PID to n.
func mergeHazard(n *LockNode, h guard.Hazard, now time.Time) {
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&n.Client, h.Client)
	fill(&n.Application, h.Application)
	fill(&n.User, h.User)
	fill(&n.State, h.State)
	fill(&n.Statement, h.Query)
	fill(&n.TraceID, h.TraceID)
	if h.Source == "proxy" || n.Source == "" {
		n.Source = h.Source
	}
	if !h.XactStart.IsZero() && (n.XactStart == nil || h.XactStart.Before(*n.XactStart)) {
		t := h.XactStart
		n.XactStart = &t
		n.XactAgeMS = ms(now.Sub(t))
	}
	l := NodeLock{Relation: h.Rel.String(), LockMode: h.Mode.String(), Granted: h.Granted, Source: h.Source, mode: h.Mode}
	if !h.Granted && !h.WaitStart.IsZero() {
		l.WaitMS = ms(now.Sub(h.WaitStart))
		if n.waitStart.IsZero() || h.WaitStart.Before(n.waitStart) {
			n.waitStart = h.WaitStart
		}
	}
	for i, e := range n.Locks {
		if e.Relation == l.Relation && e.mode == l.mode && e.Granted == l.Granted {
			// The same lock from the monitor and from lockguard itself.
			if l.Source == "proxy" {
				n.Locks[i].Source = "proxy"
			}
			n.Locks[i].WaitMS = max(e.WaitMS, l.WaitMS)
			return
		}
	}
	n.Locks = append(n.Locks, l)
	for _, b := range h.BlockedBy {
		if b != h.PID && !containsInt(n.parents, b) {
			n.parents = append(n.parents, b)
		}
	}
}

// finishNode sorts a backend's locks and picks its main one.
func finishNode(n *LockNode) {
	// lockguard reports a DDL's locks as pending until it completes; the
	// monitor knows which of them are granted already.
	kept := n.Locks[:0]
	for _, l := range n.Locks {
		if !l.Granted && l.Source == "proxy" && grantedAtLeast(n.Locks, l) {
			continue
		}
		kept = append(kept, l)
	}
	n.Locks = kept
	sort.SliceStable(n.Locks, func(i, j int) bool {
		a, b := n.Locks[i], n.Locks[j]
		if a.Granted != b.Granted {
			return !a.Granted
		}
		if a.mode != b.mode {
			return a.mode > b.mode
		}
		return a.Relation < b.Relation
	})
	if len(n.Locks) > 0 {
		m := n.Locks[0]
		n.Relation, n.LockMode, n.Granted, n.Waiting, n.WaitMS = m.Relation, m.LockMode, m.Granted, !m.Granted, m.WaitMS
	}
	sort.Ints(n.parents)
	n.BlockedBy = n.parents
}

func grantedAtLeast(locks []NodeLock, l NodeLock) bool {
	for _, g := range locks {
		if g.Granted && g.Relation == l.Relation && g.mode >= l.mode {
			return true
		}
	}
	return false
}

// describe fills in the backends that are on the tree only as blockers.
func (s *Status) describe(ctx context.Context, tree *LockTree, now time.Time) {
	stubs := map[int]*LockNode{}
	var pids []int
	eachNode(tree, func(n *LockNode) {
		if !n.OnBoard {
			stubs[n.PID] = n
			pids = append(pids, n.PID)
		}
	})
	if len(pids) == 0 {
		return
	}
	sort.Ints(pids)
	key := fmt.Sprint(pids)
	s.mu.Lock()
	sess, fresh := s.sessions, s.sessionsKey == key && now.Sub(s.sessionsAt) >= 0 && now.Sub(s.sessionsAt) < sessionsTTL
	s.mu.Unlock()
	if !fresh {
		// One lookup serves every request for a moment: a page polls
		// /api/locks and /api/incidents together, and several may be open.
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var err error
		if sess, err = s.Sessions(ctx, pids); err != nil {
			return
		}
		s.mu.Lock()
		s.sessions, s.sessionsKey, s.sessionsAt = sess, key, now
		s.mu.Unlock()
	}
	for _, se := range sess {
		n := stubs[se.PID]
		if n == nil {
			continue
		}
		n.State, n.Statement, n.Application, n.User, n.Client = se.State, se.Query, se.Application, se.User, se.Client
		if !se.XactStart.IsZero() {
			t := se.XactStart
			n.XactStart = &t
			n.XactAgeMS = ms(now.Sub(t))
		}
	}
}

func eachNode(tree *LockTree, f func(*LockNode)) {
	var walk func(n *LockNode)
	walk = func(n *LockNode) {
		f(n)
		for _, c := range n.Children {
			walk(c)
		}
	}
	for _, r := range tree.Roots {
		walk(r)
	}
}

// attachAffected hangs the recent held and shed statements under the node
// whose lock caused them.
func attachAffected(tree *LockTree, evs []Event, now time.Time) {
	byPID := map[int]*LockNode{}
	eachNode(tree, func(n *LockNode) { byPID[n.PID] = n })
	groups := map[*LockNode]map[string]*Affected{}
	for _, ev := range evs { // newest first
		if ev.Kind != KindShed && ev.Kind != KindHeld {
			continue
		}
		if now.Sub(ev.Time) > AffectedWindow {
			break
		}
		n := byPID[ev.BlockerPID]
		if n == nil || ev.BlockerPID == 0 {
			continue
		}
		n.AffectedTotal++
		if groups[n] == nil {
			groups[n] = map[string]*Affected{}
		}
		key := ev.Kind + "\x00" + ev.Relation + "\x00" + ev.Statement
		a := groups[n][key]
		if a == nil {
			a = &Affected{Kind: ev.Kind, Statement: ev.Statement, Relation: ev.Relation, LockMode: ev.LockMode,
				Last: ev.Time, PID: ev.PID, Client: ev.Client, Application: ev.Application, User: ev.User,
				TraceID: ev.TraceID, sessions: map[string]bool{}}
			groups[n][key] = a
		}
		a.Count++
		a.sessions[sessionKey(ev)] = true
		a.Sessions = len(a.sessions)
		a.LongestWaitMS = max(a.LongestWaitMS, ms(ev.Wait))
	}
	for n, g := range groups {
		for _, a := range g {
			n.Affected = append(n.Affected, *a)
		}
		sort.Slice(n.Affected, func(i, j int) bool {
			a, b := n.Affected[i], n.Affected[j]
			if !a.Last.Equal(b.Last) {
				return a.Last.After(b.Last)
			}
			return a.Statement < b.Statement
		})
		if len(n.Affected) > maxAffected {
			n.Affected = n.Affected[:maxAffected]
		}
	}
}

// sessionKey identifies the session an event is about.
func sessionKey(ev Event) string {
	if ev.PID != 0 {
		return "pid:" + strconv.Itoa(ev.PID)
	}
	return "client:" + ev.Client + "/" + ev.User + "/" + ev.Application
}

// remember notes under which root blocker each backend was seen, so that an
// incident that outlives its lock tree is still told by its root.
func (s *Status) remember(tree *LockTree, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.links == nil {
		s.links = map[int]link{}
	}
	var walk func(n *LockNode, root int)
	walk = func(n *LockNode, root int) {
		if n.PID != root {
			s.links[n.PID] = link{root: root, seen: now}
		}
		for _, c := range n.Children {
			walk(c, root)
		}
	}
	for _, r := range tree.Roots {
		walk(r, r.PID)
		if len(r.Children) > 0 || r.AffectedTotal > 0 {
			s.links[r.PID] = link{root: r.PID, seen: now, node: rootSummary(r)}
		}
	}
	if len(s.links) > 4*maxNodes {
		for pid, l := range s.links {
			if now.Sub(l.seen) > 10*time.Minute || len(s.links) > 4*maxNodes {
				delete(s.links, pid)
			}
		}
	}
}

// Incident is a run of guard events caused by one root blocker: the blast
// radius of one held or awaited lock.
type Incident struct {
	ID      string    `json:"id"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"` // the last event so far
	Ongoing bool      `json:"ongoing"`
	// Root is the root blocker, when known (0 for events that named only
	// a relation).
	Root *LockNode `json:"root_blocker,omitempty"`
	// Blockers are the backends whose locks the events name, the root
	// included (e.g. a report and the DDL waiting behind it).
	Blockers  []int          `json:"blockers,omitempty"`
	Relations []string       `json:"relations"`
	Counts    map[string]int `json:"counts"`
	Events    int            `json:"events"`
	// Sessions counts the distinct sessions affected (blockers excluded);
	// LongestWaitMS is the longest any of them waited (held, or a DDL).
	Sessions      int      `json:"sessions"`
	LongestWaitMS float64  `json:"longest_wait_ms,omitempty"`
	DDL           []string `json:"ddl,omitempty"` // statements of the DDL involved, literals replaced
	TraceIDs      []string `json:"trace_ids,omitempty"`

	key      string
	sessions map[string]bool
	blockers map[int]bool
}

// kinds whose PID is a DDL that waited behind BlockerPID.
var ddlKinds = map[string]bool{KindTimeoutInjected: true, KindRetried: true, KindGaveUp: true, KindLanded: true, KindYielded: true}

// kinds whose PID is itself the blocker.
var watchdogKinds = map[string]bool{KindWatchdogWarn: true, KindWatchdogCancel: true, KindWatchdogTerminate: true}

// Incidents groups the recent events into incidents, newest first.
func (s *Status) Incidents(ctx context.Context) []*Incident {
	now := s.now()
	var evs []Event
	if s.Events != nil {
		evs = s.Events.Recent(0)
	}
	tree := buildTree(s.hazards(), now)
	if s.Sessions != nil {
		s.describe(ctx, tree, now)
	}
	s.remember(tree, now)
	return groupIncidents(evs, tree, s.linksCopy(), now)
}

func (s *Status) linksCopy() map[int]link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]link, len(s.links))
	for pid, l := range s.links {
		out[pid] = l
	}
	return out
}

// groupIncidents: events about backends linked by waiting (a DDL and the
// backend it waited for, a queue and the DDL it queued behind, as the
// events and the lock tree show) belong to one incident while they are
// less than IncidentGap apart.
func groupIncidents(evs []Event, tree *LockTree, links map[int]link, now time.Time) []*Incident {
	uf := unionFind{}
	roots := map[int]*LockNode{}
	onBoard := map[int]bool{}
	for _, r := range tree.Roots {
		roots[r.PID] = r
		var walk func(n *LockNode)
		walk = func(n *LockNode) {
			onBoard[n.PID] = true
			if n.PID != r.PID {
				uf.union(n.PID, r.PID)
			}
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(r)
	}
	for pid, l := range links {
		uf.union(pid, l.root)
	}
	// Oldest first.
	sorted := make([]Event, len(evs))
	for i, ev := range evs {
		sorted[len(evs)-1-i] = ev
	}
	for _, ev := range sorted {
		if ddlKinds[ev.Kind] && ev.PID != 0 && ev.BlockerPID != 0 {
			uf.union(ev.PID, ev.BlockerPID)
		}
	}
	// The root of each linked set: a root of the lock tree, a session the
	// watchdog acted on, a backend a DDL waited for, or else the blocker
	// named most.
	score := map[int]int{}
	details := map[int]*LockNode{}
	for pid, l := range links {
		if l.node != nil && pid == l.root {
			score[pid] += 500 // a root blocker seen in an earlier lock tree
			details[pid] = l.node
		}
	}
	for pid, n := range roots {
		score[pid] += 1000
		details[pid] = n
	}
	for _, ev := range sorted {
		switch {
		case watchdogKinds[ev.Kind] && ev.PID != 0:
			score[ev.PID] += 100
			if details[ev.PID] == nil {
				details[ev.PID] = &LockNode{PID: ev.PID, Client: ev.Client, User: ev.User, Application: ev.Application,
					Statement: ev.Statement, Relation: ev.Relation, LockMode: ev.LockMode, TraceID: ev.TraceID}
			}
		case ddlKinds[ev.Kind] && ev.BlockerPID != 0:
			score[ev.BlockerPID] += 10
		case ev.BlockerPID != 0:
			score[ev.BlockerPID]++
		}
	}
	best := map[int]int{} // set representative → root pid
	for pid, sc := range score {
		r := uf.find(pid)
		if b, ok := best[r]; !ok || sc > score[b] || (sc == score[b] && pid < b) {
			best[r] = pid
		}
	}

	var out, early = []*Incident(nil), []Event(nil)
	open := map[string]*Incident{}
	for _, ev := range sorted {
		key := ""
		switch {
		case watchdogKinds[ev.Kind] && ev.PID != 0:
			key = "pid:" + strconv.Itoa(uf.find(ev.PID))
		case ev.BlockerPID != 0:
			key = "pid:" + strconv.Itoa(uf.find(ev.BlockerPID))
		case ev.PID != 0 && open["pid:"+strconv.Itoa(uf.find(ev.PID))] != nil &&
			ev.Time.Sub(open["pid:"+strconv.Itoa(uf.find(ev.PID))].End) <= IncidentGap:
			key = "pid:" + strconv.Itoa(uf.find(ev.PID)) // e.g. a DDL that landed
		case ev.Relation != "" && (ev.Kind == KindShed || ev.Kind == KindHeld || ev.Kind == KindGaveUp ||
			ev.Kind == KindRetried || ev.Kind == KindYielded):
			key = "rel:" + ev.Relation
		case ev.Relation != "":
			// Context (a warning, an injected timeout) joins an incident
			// open on its table, and starts none.
			for _, inc := range open {
				if containsString(inc.Relations, ev.Relation) && ev.Time.Sub(inc.End) <= IncidentGap {
					key = inc.key
					break
				}
			}
		}
		if key == "" {
			if ev.PID != 0 && ddlKinds[ev.Kind] {
				early = append(early, ev)
			}
			continue
		}
		inc := open[key]
		if inc == nil || ev.Time.Sub(inc.End) > IncidentGap {
			inc = &Incident{key: key, Start: ev.Time, End: ev.Time, Counts: map[string]int{}, Relations: []string{},
				sessions: map[string]bool{}, blockers: map[int]bool{}}
			open[key] = inc
			out = append(out, inc)
		}
		inc.add(ev)
	}
	// What a DDL did before its incident began (the injected timeout, its
	// first attempts) belongs to it.
	for _, ev := range early {
		for _, inc := range out {
			if inc.key == "pid:"+strconv.Itoa(uf.find(ev.PID)) && !ev.Time.Before(inc.Start.Add(-IncidentGap)) && !ev.Time.After(inc.End) {
				inc.add(ev)
				break
			}
		}
	}
	for _, inc := range out {
		if len(inc.key) > 4 && inc.key[:4] == "pid:" {
			rep, _ := strconv.Atoi(inc.key[4:])
			if root, ok := best[rep]; ok {
				inc.blockers[root] = true
				if d := details[root]; d != nil {
					inc.Root = rootSummary(d)
				} else {
					inc.Root = &LockNode{PID: root}
				}
			}
		}
		for pid := range inc.blockers {
			inc.Blockers = append(inc.Blockers, pid)
			delete(inc.sessions, "pid:"+strconv.Itoa(pid))
			if onBoard[pid] && open[inc.key] == inc { // only the latest run of a blocker goes on
				inc.Ongoing = true
			}
		}
		sort.Ints(inc.Blockers)
		sort.Strings(inc.Relations)
		inc.Sessions = len(inc.sessions)
		if now.Sub(inc.End) <= incidentLinger {
			inc.Ongoing = true
		}
		root := 0
		if inc.Root != nil {
			root = inc.Root.PID
		}
		inc.ID = fmt.Sprintf("%d-%d", root, inc.Start.UnixMilli())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	return out
}

// add counts ev into inc.
func (inc *Incident) add(ev Event) {
	if ev.Time.Before(inc.Start) {
		inc.Start = ev.Time
	}
	if ev.Time.After(inc.End) {
		inc.End = ev.Time
	}
	inc.Events++
	inc.Counts[ev.Kind]++
	if ev.Relation != "" && !containsString(inc.Relations, ev.Relation) {
		inc.Relations = append(inc.Relations, ev.Relation)
	}
	blocker := ev.BlockerPID
	if watchdogKinds[ev.Kind] {
		blocker = ev.PID
	}
	if blocker != 0 {
		inc.blockers[blocker] = true
	}
	if ddlKinds[ev.Kind] || ev.Kind == KindBlocked || ev.Kind == KindWarned {
		if ev.Statement != "" && !containsString(inc.DDL, ev.Statement) && len(inc.DDL) < 5 {
			inc.DDL = append(inc.DDL, ev.Statement)
		}
	}
	if ev.TraceID != "" && !containsString(inc.TraceIDs, ev.TraceID) && len(inc.TraceIDs) < 5 {
		inc.TraceIDs = append(inc.TraceIDs, ev.TraceID)
	}
	if !watchdogKinds[ev.Kind] {
		// A watchdog event's Wait is how long the blocker has been at it,
		// not a wait it caused.
		inc.sessions[sessionKey(ev)] = true
		inc.LongestWaitMS = max(inc.LongestWaitMS, ms(ev.Wait))
	}
}

// rootSummary is n without its subtree and events.
func rootSummary(n *LockNode) *LockNode {
	c := *n
	c.Children, c.Affected, c.AffectedTotal = nil, nil, 0
	return &c
}

type unionFind map[int]int

func (u unionFind) find(x int) int {
	p, ok := u[x]
	if !ok || p == x {
		return x
	}
	r := u.find(p)
	u[x] = r
	return r
}

func (u unionFind) union(a, b int) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if ra > rb {
		ra, rb = rb, ra
	}
	u[rb] = ra
	u[ra] = ra
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// limit reads ?limit=N (1…max; def when absent).
func limit(r *http.Request, def, maxN int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return min(def, maxN), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit must be a positive integer, got %q", v)
	}
	return min(n, maxN), nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Status) serveLocks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.Locks(r.Context()))
}

func (s *Status) serveEvents(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r, defaultLimit, max(s.Events.Len(), 1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	evs := s.Events.Recent(n)
	if evs == nil {
		evs = []Event{}
	}
	writeJSON(w, struct {
		Now    time.Time `json:"now"`
		Events []Event   `json:"events"`
	}{s.now(), evs})
}

func (s *Status) serveIncidents(w http.ResponseWriter, r *http.Request) {
	n, err := limit(r, 20, 1000)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	incs := s.Incidents(r.Context())
	if len(incs) > n {
		incs = incs[:n]
	}
	if incs == nil {
		incs = []*Incident{}
	}
	writeJSON(w, struct {
		Now       time.Time   `json:"now"`
		GapMS     float64     `json:"gap_ms"`
		Incidents []*Incident `json:"incidents"`
	}{s.now(), ms(IncidentGap), incs})
}

func (s *Status) servePolicy(w http.ResponseWriter, r *http.Request) {
	var p any
	if s.Policy != nil {
		p = s.Policy()
	}
	writeJSON(w, p)
}

//go:embed status.html
var statusPage []byte

// statusCSP allows exactly the page's own inline script and style, and
// fetches to this origin only.
var statusCSP = func() string {
	hash := func(tag string) string {
		m := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`).FindSubmatch(statusPage)
		if m == nil {
			panic("BUG: status.html has no <" + tag + ">")
		}
		sum := sha256.Sum256(m[1])
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'none'; script-src " + hash("script") + "; style-src " + hash("style") +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// servePage serves the page. It holds no data (that comes from /api/ with
// the token), so it is served without the token: a browser cannot send a
// bearer header when it navigates.
func (s *Status) servePage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(statusPage)
}

// PolicyView is a JSON-able summary of a policy configuration, for
// Status.Policy: the switches and every rule with its effective action
// ("off" when the rule does not run). Settings are added as given (e.g. the
// lock timeout and shedding settings); they must not hold secrets.
func PolicyView(cfg guard.PolicyConfig, settings map[string]any) (any, error) {
	p, err := guard.NewPolicy(cfg)
	if err != nil {
		return nil, err
	}
	type rule struct {
		ID       string `json:"id"`
		Category string `json:"category"`
		Action   string `json:"action"`
		Scoped   bool   `json:"scoped,omitempty"`
		Summary  string `json:"summary"`
	}
	preset := cfg.Preset
	if preset == "" {
		preset = "default"
	}
	v := struct {
		Preset        string         `json:"preset"`
		Freeze        bool           `json:"freeze"`
		Windows       []string       `json:"windows,omitempty"`
		Overrides     bool           `json:"overrides"`
		RequireReason bool           `json:"require_reason"`
		Settings      map[string]any `json:"settings,omitempty"`
		Rules         []rule         `json:"rules"`
	}{Preset: preset, Freeze: cfg.Freeze, Windows: cfg.Windows, Overrides: cfg.Overrides == nil || *cfg.Overrides,
		RequireReason: cfg.RequireReason, Settings: settings}
	for _, ri := range guard.Rules() {
		if ri.OfflineOnly {
			continue
		}
		act := "off"
		if a, ok := p.Action(ri.ID); ok {
			act = a.String()
		}
		rc, scoped := cfg.Rules[ri.ID]
		scoped = scoped && (len(rc.Tables) > 0 || len(rc.Users) > 0 || len(rc.Databases) > 0 || len(rc.Applications) > 0 ||
			rc.MinRows > 0 || rc.MinBytes > 0 || rc.Versions != "")
		v.Rules = append(v.Rules, rule{ID: ri.ID, Category: ri.Category, Action: act, Scoped: scoped, Summary: ri.Summary})
	}
	return v, nil
}

// PGSessions returns a Status.Sessions that reads pg_stat_activity on pool
// (lockguard's side connection); statements are sanitized.
func PGSessions(pool *pgxpool.Pool) func(ctx context.Context, pids []int) ([]Session, error) {
	return func(ctx context.Context, pids []int) ([]Session, error) {
		ids := make([]int32, len(pids))
		for i, p := range pids {
			ids[i] = int32(p)
		}
		rows, err := pool.Query(ctx, `
SELECT pid, coalesce(state, ''), coalesce(query, ''), coalesce(application_name, ''),
       coalesce(usename::text, ''), coalesce(host(client_addr), ''), xact_start
FROM pg_stat_activity WHERE pid = ANY ($1)`, ids)
		if err != nil {
			return nil, fmt.Errorf("reading pg_stat_activity: %w", err)
		}
		defer rows.Close()
		var out []Session
		for rows.Next() {
			var se Session
			var xact *time.Time
			if err := rows.Scan(&se.PID, &se.State, &se.Query, &se.Application, &se.User, &se.Client, &xact); err != nil {
				return nil, err
			}
			se.Query = guard.Sanitize(se.Query)
			if xact != nil {
				se.XactStart = *xact
			}
			out = append(out, se)
		}
		return out, rows.Err()
	}
}
