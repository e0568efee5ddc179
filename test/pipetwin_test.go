package test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPipelinedSessionMatchesDirect: clients pipeline. Three twin sessions,
// one straight to PostgreSQL, one through a guarded lockguard and one
// through a lockguard without a guard (the plain relay), are sent the same
// seeded random pipelines, each in one write or a step per write: simple
// Queries (reads, failures, empty ones, several statements, transaction
// control, settings, DDL on a table of their own), and extended batches
// that end with a Sync or a Flush (named and unnamed statements and
// portals, Describes, Binds with a parameter or none, Executes with row
// limits, failing Parses, Binds and Describes, COPY in (with a Sync or a
// Flush behind its Execute too, or neither and a pause before its data)
// and out, transaction control and settings
// (SET, SET LOCAL, RESET, RESET ALL), set_config with a bound value; some
// with no Sync or Flush, so that what follows goes on with the batch or, a
// Query, ends it), and FunctionCalls, lone Syncs and Flushes. Each pipeline
// ends with a Sync, a ROLLBACK and a marker Query; a SHOW lock_timeout
// follows once its answers are in. The twins must answer with the same
// messages in the same order: types, SQLSTATEs, command tags and rows, and
// leave the same lock_timeout. Notices are left out (lockguard adds its DDL
// warnings), and so are parameter statuses.
//
// A session that lockguard miscounts hangs here (the answer to the marker
// never comes), or gets another's answers (a swallowed or misplaced
// ReadyForQuery shifts everything after it).
func TestPipelinedSessionMatchesDirect(t *testing.T) {
	lg, plain := startGuarded(t, nil), startLockguard(t, nil)
	ctx := ctxT(t, 30*time.Second)
	who := [3]string{"direct", "guarded", "plain"}
	var tables [3]string
	for i, w := range who {
		tables[i] = createTable(t, ctx, "pipe_"+w, "id int")
	}
	var version uint32 // a function whose result the twins share
	if err := connect(t, directDSN()).QueryRow(ctx, "SELECT 'version'::regproc::oid").Scan(&version); err != nil {
		t.Fatal(err)
	}
	var twins [3]*rawProto
	for i, addr := range []string{pg.Addr(), lg.addr, plain.addr} {
		c, fe := rawStartup(t, addr)
		twins[i] = &rawProto{t: t, conn: c, fe: fe}
	}

	// A step is the messages one client action sends; {T} in a text is
	// the twin's table.
	type step []pgproto3.FrontendMessage
	n := 0
	next := func() int { n++; return n }
	texts := []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return fmt.Sprintf("SELECT %d", r.IntN(100)) },
		func(r *rand.Rand) string { return "SELECT 1/0" },
		func(r *rand.Rand) string { return "SELEC 1" },
		func(r *rand.Rand) string { return "SELECT generate_series(1, 3)" },
		func(r *rand.Rand) string { return "SELECT count(*) FROM {T}" },
		func(r *rand.Rand) string { return "INSERT INTO {T} VALUES (1)" },
		func(r *rand.Rand) string {
			return fmt.Sprintf("ALTER TABLE {T} ALTER COLUMN id SET DEFAULT %d", r.IntN(10))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf("ALTER TABLE {T} ADD COLUMN IF NOT EXISTS c%d int", r.IntN(4))
		},
		func(r *rand.Rand) string { return "SET application_name = 'pipe'" },
		func(r *rand.Rand) string { return "BEGIN" },
		func(r *rand.Rand) string { return "COMMIT" },
		func(r *rand.Rand) string { return "ROLLBACK" },
		func(r *rand.Rand) string { return "SET lock_timeout = '2s'" },
		func(r *rand.Rand) string { return "SET LOCAL lock_timeout = '1s'" },
		func(r *rand.Rand) string { return "RESET lock_timeout" },
		func(r *rand.Rand) string { return "RESET ALL" },
		func(r *rand.Rand) string { return "SELECT set_config('lock_timeout', '3s', false)" },
		func(r *rand.Rand) string { return "SELECT set_config('lock_timeout', $1, false)" },
		func(r *rand.Rand) string { return "SELECT $1::int + 1" },
		func(r *rand.Rand) string { return "SAVEPOINT a" },
		func(r *rand.Rand) string { return "ROLLBACK TO a" },
	}
	simpleOnly := []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return "" },
		func(r *rand.Rand) string { return "SELECT 1; SELECT 1/0; SELECT 2" },
		func(r *rand.Rand) string { return "ALTER TABLE {T} ALTER COLUMN id DROP DEFAULT; SELECT 3" },
	}
	pick := func(r *rand.Rand, from []func(*rand.Rand) string) string { return from[r.IntN(len(from))](r) }
	names := []string{"", "", "s1", "s2"}
	extended := func(r *rand.Rand) step {
		var s step
		stmt := names[r.IntN(len(names))]
		if r.IntN(4) > 0 {
			s = append(s, &pgproto3.Parse{Name: stmt, Query: pick(r, texts)})
		}
		switch r.IntN(6) {
		case 0:
			s = append(s, &pgproto3.Describe{ObjectType: 'S', Name: stmt})
		case 1:
			s = append(s, &pgproto3.Close{ObjectType: 'S', Name: stmt})
		case 2:
			s = append(s, &pgproto3.Close{ObjectType: 'P', Name: names[r.IntN(len(names))]})
		}
		for range 1 + r.IntN(2) {
			portal := names[r.IntN(len(names))]
			if r.IntN(5) > 0 {
				bind := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
				if r.IntN(3) == 0 { // for the texts with $1, or a wrong count
					bind.Parameters = [][]byte{[]byte([]string{"7", "4s"}[r.IntN(2)])}
				}
				s = append(s, bind)
			}
			if r.IntN(3) == 0 {
				s = append(s, &pgproto3.Describe{ObjectType: 'P', Name: portal})
			}
			s = append(s, &pgproto3.Execute{Portal: portal, MaxRows: uint32(r.IntN(3))})
		}
		switch r.IntN(6) {
		case 0, 1:
			return append(s, &pgproto3.Flush{})
		case 2:
			return s // what comes next ends the batch, or goes on with it
		}
		return append(s, &pgproto3.Sync{})
	}
	copyIn := func(r *rand.Rand) step {
		s := step{&pgproto3.Query{String: "COPY {T} (id) FROM STDIN"}}
		extended := r.IntN(4) == 0
		if extended {
			// A statement and portal of its own, closed after it: a
			// later Bind or Execute of a COPY would make the random
			// messages after it its data.
			s = step{&pgproto3.Parse{Name: "cp", Query: "COPY {T} (id) FROM STDIN"},
				&pgproto3.Bind{DestinationPortal: "cp", PreparedStatement: "cp"}, &pgproto3.Execute{Portal: "cp"}}
			switch r.IntN(3) {
			case 0:
				// As tokio-postgres: a Sync right behind the Execute,
				// which PostgreSQL ignores in copy-in mode.
				s = append(s, &pgproto3.Sync{})
			case 1:
				s = append(s, &pgproto3.Flush{}) // ignored too
			default:
				// Neither: PostgreSQL answers the Execute at once. A
				// pause (nil) here makes lockguard read the rest later.
				if r.IntN(2) == 0 {
					s = append(s, nil)
				}
			}
		}
		s = append(s, &pgproto3.CopyData{Data: []byte("7\n8\n")})
		switch r.IntN(4) {
		case 0:
			s = append(s, &pgproto3.CopyFail{Message: "changed my mind"})
		case 1:
			s = append(s, &pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyDone{})
		default:
			s = append(s, &pgproto3.CopyDone{})
		}
		if extended {
			s = append(s, &pgproto3.Close{ObjectType: 'P', Name: "cp"}, &pgproto3.Close{ObjectType: 'S', Name: "cp"}, &pgproto3.Sync{})
		}
		return s
	}
	gen := func(r *rand.Rand) step {
		switch k := r.IntN(13); {
		case k == 12:
			return step{&pgproto3.FunctionCall{Function: version}}
		case k == 10:
			return copyIn(r)
		case k == 11:
			return step{&pgproto3.Query{String: "COPY (SELECT generate_series(1, 3)) TO STDOUT"}}
		case k < 4:
			if r.IntN(3) == 0 {
				return step{&pgproto3.Query{String: pick(r, simpleOnly)}}
			}
			return step{&pgproto3.Query{String: pick(r, texts)}}
		case k < 8:
			return extended(r)
		case k == 8:
			return step{&pgproto3.Sync{}}
		default:
			return step{&pgproto3.Flush{}}
		}
	}
	describe := func(steps []step) string {
		var b strings.Builder
		for _, s := range steps {
			b.WriteString("\n  ")
			for _, m := range s {
				fmt.Fprintf(&b, "%s ", strings.TrimPrefix(fmt.Sprintf("%T%+v", m, m), "*pgproto3."))
			}
		}
		return b.String()
	}

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LOCKGUARD_PIPE_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64) // to replay a failure
	}
	r := rand.New(rand.NewPCG(seed, 0))
	var history []string // the last pipelines, for a failure's message
	for round := range 200 {
		steps := make([]step, 1+r.IntN(6))
		for i := range steps {
			steps[i] = gen(r)
		}
		marker := fmt.Sprintf("end %d", next())
		// Some pipelines go a step per write, a millisecond apart, so
		// that lockguard reads a batch in parts.
		apart := r.IntN(4) == 0
		var answers [3][]string
		for i, tw := range twins {
			for _, s := range steps {
				if apart {
					if err := tw.fe.Flush(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Millisecond)
				}
				for _, m := range s {
					if m == nil {
						if err := tw.fe.Flush(); err != nil {
							t.Fatal(err)
						}
						time.Sleep(time.Millisecond)
						continue
					}
					if q, ok := m.(*pgproto3.Query); ok {
						m = &pgproto3.Query{String: strings.ReplaceAll(q.String, "{T}", tables[i])}
					} else if p, ok := m.(*pgproto3.Parse); ok {
						m = &pgproto3.Parse{Name: p.Name, Query: strings.ReplaceAll(p.Query, "{T}", tables[i])}
					}
					tw.fe.Send(m)
				}
			}
			tw.fe.Send(&pgproto3.Sync{})
			tw.fe.Send(&pgproto3.Query{String: "ROLLBACK"}) // the marker fails in a failed block
			tw.fe.Send(&pgproto3.Query{String: "SELECT '" + marker + "'"})
			if err := tw.fe.Flush(); err != nil {
				t.Fatal(err)
			}
			a, err := readPipelined(tw.conn, tw.fe, marker)
			if err != nil {
				t.Fatalf("seed %d round %d: the %s session: %v after %v; the pipeline:%s",
					seed, round, who[i], err, a, describe(steps))
			}
			// Then, on its own, what the pipeline left the session's
			// lock_timeout at: lockguard restores what it changed at the
			// latest before a Query that finds the session idle.
			tw.fe.Send(&pgproto3.Query{String: "SHOW lock_timeout"})
			if err := tw.fe.Flush(); err != nil {
				t.Fatal(err)
			}
			lt, err := readPipelined(tw.conn, tw.fe, "")
			if err != nil {
				t.Fatalf("seed %d round %d: the %s session: SHOW lock_timeout: %v", seed, round, who[i], err)
			}
			answers[i] = append(a, lt...)
		}
		for i := 1; i < len(answers); i++ {
			if d, g := strings.Join(answers[0], " "), strings.Join(answers[i], " "); d != g {
				t.Fatalf("seed %d round %d: the pipeline:%s\ndirect:  %s\n%-8s %s\nthe pipelines before it:%s",
					seed, round, describe(steps), d, who[i]+":", g, strings.Join(history, "\n ---"))
			}
		}
		if os.Getenv("LOCKGUARD_PIPE_TRACE") != "" {
			t.Logf("round %d:%s\n  %s", round, describe(steps), strings.Join(answers[0], " "))
		}
		history = append(history[max(0, len(history)-3):], describe(steps))
	}
}

// readPipelined reads answers up to the ReadyForQuery after the DataRow
// marker (the first one when marker is ""), for at most 10 seconds, and returns them as words: message types,
// with SQLSTATEs, command tags and row values, leaving out notices and
// parameter statuses.
func readPipelined(c net.Conn, fe *pgproto3.Frontend, marker string) ([]string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var out []string
	seen := false
	for {
		m, err := fe.Receive()
		if err != nil {
			return out, err
		}
		w := strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
		switch m := m.(type) {
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
			continue
		case *pgproto3.ErrorResponse:
			w += ":" + m.Code
		case *pgproto3.CommandComplete:
			w += ":" + string(m.CommandTag)
		case *pgproto3.DataRow:
			for _, v := range m.Values {
				w += ":" + string(v)
			}
			seen = seen || len(m.Values) == 1 && string(m.Values[0]) == marker
		case *pgproto3.ReadyForQuery:
			w += ":" + string(m.TxStatus)
			if seen || marker == "" {
				return append(out, w), nil
			}
		}
		out = append(out, w)
	}
}
