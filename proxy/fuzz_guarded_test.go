package proxy

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzGuardedClient feeds a client stream, split at arbitrary points, through
// the guarded client side: batches are collected, shown to a guard and
// forwarded, refused (replaced by a failing statement) or wrapped in injected
// statements, depending on their content. It must never panic, and the
// guard must only ever see statement texts that are part of the input.
func FuzzGuardedClient(f *testing.F) {
	seed := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte { return encode(f, msgs...) }
	f.Add(seed(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Query{String: "refuse me"}, &pgproto3.Terminate{}), []byte{0, 3, 7})
	f.Add(seed(&pgproto3.Parse{Name: "s1", Query: "inject around"}, &pgproto3.Bind{PreparedStatement: "s1"},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Sync{}), []byte{1})
	f.Add(seed(&pgproto3.Parse{Query: "refuse"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.FunctionCall{Function: 1}, &pgproto3.CopyData{Data: []byte("x")}), []byte{2, 9})
	f.Add([]byte{'P', 0, 0, 0, 5, 'x', 'S', 0, 0, 0, 4}, []byte{0})
	f.Add(seed(&pgproto3.Parse{Query: "inject"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Parse{Name: "c", Query: "COPY t FROM STDIN"},
		&pgproto3.Bind{PreparedStatement: "c"}, &pgproto3.Execute{}, &pgproto3.CopyData{Data: []byte("1")}, &pgproto3.CopyDone{},
		&pgproto3.Sync{}), []byte{40, 3, 60})
	f.Fuzz(func(t *testing.T, data, sizes []byte) {
		cl := &chunkConn{data: append([]byte(nil), data...), sizes: sizes}
		up := &chunkConn{}
		s, _, _ := testSession(nil, nil)
		s.client, s.upstream = cl, up
		s.cf.limit = 16 << 10
		s.cfg.Hooks = &Hooks{Batch: func(_ context.Context, _ *Session, b *Batch) *Verdict {
			for _, st := range b.Stmts {
				if !bytes.Contains(data, st.SQL) {
					t.Fatalf("the guard saw %q, which the client never sent", st.SQL)
				}
			}
			return fuzzVerdict(b)
		}, AwaitsClient: func(_ *Session, sql []byte) bool {
			if !bytes.Contains(data, sql) {
				t.Fatalf("AwaitsClient saw %q, which the client never sent", sql)
			}
			return bytes.Contains(sql, []byte("COPY"))
		}}
		for i := 0; i < 1<<16; i++ {
			if err := s.pumpClientGuarded(); err != nil {
				break
			}
		}
	})
}

// fuzzVerdict is the guard of the guarded fuzz targets: it refuses, wraps
// in injected statements (with a notice) or holds and sheds a batch whose
// first statement to say one of those words says so, and lets the rest
// through.
func fuzzVerdict(b *Batch) *Verdict {
	for _, st := range b.Stmts {
		switch {
		case bytes.Contains(st.SQL, []byte("refuse")):
			return &Verdict{Refuse: &Error{Code: "LG001", Message: "lockguard: refused"}}
		case bytes.Contains(st.SQL, []byte("inject")):
			return &Verdict{Before: []string{"SET lock_timeout = '1s'"}, After: []string{"RESET lock_timeout"},
				Notices: []*Error{{Severity: "WARNING", Code: "01000", Message: "lockguard: careful"}}}
		case bytes.Contains(st.SQL, []byte("hold")):
			return &Verdict{Hold: func(context.Context) *Error { return &Error{Code: "55P03", Message: "lockguard: shed"} }}
		}
	}
	return nil
}

// FuzzServerMessages: the decoders of backend messages never panic, and
// replacing an error keeps every message's framing.
func FuzzServerMessages(f *testing.F) {
	f.Add(encode(f, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "57P01", Message: "bye"}), []byte("x"))
	f.Add(encode(f, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42883", Message: "no"}, &pgproto3.ReadyForQuery{TxStatus: 'I'}), []byte("E"))
	f.Add([]byte{'E', 0, 0, 0, 4}, []byte{})
	f.Fuzz(func(t *testing.T, msgs, body []byte) {
		_ = isFatal(msgs)
		_ = errorCodeBytes(msgs)
		repl := encode(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "LG001", Message: string(body)})
		out := replaceError(msgs, repl)
		if bytes.Equal(out, msgs) {
			return
		}
		// Replaced: what precedes and follows the replacement is intact.
		i := bytes.Index(out, repl)
		if i < 0 || !bytes.Equal(out[:i], msgs[:i]) || !bytes.HasSuffix(msgs, out[i+len(repl):]) {
			t.Fatalf("replaceError damaged the stream: %q → %q", msgs, out)
		}
	})
}
