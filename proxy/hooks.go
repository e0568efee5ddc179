package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"
)

// Hooks let a guard act on what clients send. The proxy stays free of SQL:
// it hands the guard statement texts as bytes and carries out its Verdict.
// Every field may be nil; a nil Hooks relays everything unchanged.
type Hooks struct {
	// Open runs once per session, after authentication and before the
	// first client message is read. Its result is kept in Session.State
	// for the other hooks. nil means no state.
	Open func(s *Session) any

	// Batch runs before lockguard forwards a simple Query, or an
	// extended-protocol batch when its Sync (or a Flush) arrives; extended
	// messages a Query or FunctionCall follows without either are a part
	// that a Flush ends, and so are those a read leaves held that execute
	// a statement AwaitsClient names. A batch continued after a Flush is shown part by
	// part, its end included: a lone Sync or a FunctionCall that ends it
	// comes as a last part without statements. It runs on
	// the session's client side: while it runs, nothing more is read from
	// that client. With an event loop (Config.EventLoops) it runs on the
	// loop's goroutine, so before it waits for anything (a query on another
	// connection, a timer, WaitIdle does this itself) it must call
	// s.MayBlock(). b and every slice in it are valid only until Batch
	// returns and must not be retained. A nil Verdict forwards unchanged.
	// lockguard does not keep the Verdict itself once it has carried it
	// out (it keeps the functions in it as long as it needs them), so a
	// hook may reuse one Verdict for each batch of a session. A batch
	// whose Sync or Flush never comes (the client sends Terminate, or
	// ends its stream, first) is neither shown to Batch nor forwarded:
	// without its Sync PostgreSQL would roll back what it did.
	Batch func(ctx context.Context, s *Session, b *Batch) *Verdict

	// AwaitsClient, when set, reports whether PostgreSQL, executing the
	// statement sql, waits for data from the client (COPY … FROM STDIN).
	// PostgreSQL then answers the Execute at once, with no Sync or Flush
	// behind it, and the client may wait for that answer before it sends
	// more. So when a read leaves an extended batch held for Batch and a
	// statement that batch executes awaits the client, the batch is shown
	// to Batch and forwarded as far as it has come, as the part of a batch
	// a Flush ends. It runs only then, once per executed statement of the
	// held batch, on the session's client side like Batch (s.MayBlock()
	// before it waits). sql is valid only during the call. nil means no
	// statement awaits the client, and such a client waits for good.
	AwaitsClient func(s *Session, sql []byte) bool

	// Close runs once when the session ends.
	Close func(s *Session)

	// Complete, when set, runs on the upstream goroutine when a sync point
	// that Batch forwarded unchanged (a nil Verdict) completes: d is from
	// when lockguard read its first bytes to its ReadyForQuery, sqlstate
	// the code of its first error (nil for success; valid only during the
	// call). Batches with a Verdict report through Verdict.Result instead,
	// and statements lockguard injects are not reported. It must not block.
	Complete func(s *Session, d time.Duration, sqlstate []byte)

	// Forwarded, when set, runs on the client goroutine after client
	// bytes were written upstream: d is how long the oldest of them spent
	// in lockguard (guard decision, hold and injected statements included).
	Forwarded func(s *Session, d time.Duration)

	// AfterFailed, when set, runs on the upstream goroutine when a
	// statement of Verdict.After fails with sqlstate, other than by being
	// skipped in a failed transaction block (25P02): mostly a cancel meant
	// for the batch that came just as the batch ended. What it was to
	// restore is then still as the batch left it. It must not block.
	AfterFailed func(s *Session, sql, sqlstate string)
}

// Batch is the work one Query message or one extended-protocol batch asks
// for, as far as a guard needs to know it.
type Batch struct {
	// Simple is set for a Query message (which may hold several
	// statements), or a FunctionCall that ends a batch the client flushed
	// (none); otherwise the batch is extended-protocol messages.
	Simple bool
	// Stmts are the statements the batch parses or executes, in order.
	Stmts []BatchStmt
	// Complete is set when the batch ends with Sync or is a Query: its
	// outcome arrives with the next ReadyForQuery, so it can be retried.
	Complete bool
	// MidBatch is set when earlier messages of the same extended batch were
	// already forwarded (the client sent Flush). Verdict.Before, After and
	// Retry are then ignored: nothing can be injected inside a batch.
	MidBatch bool
	// FlushedPure is set with MidBatch when the parts forwarded before only
	// parsed, described and closed (no Bind, no Execute, none refused), as
	// asyncpg prepares every statement (Parse, Describe, Flush) before it
	// binds and executes it. Session.EndFlushed can then end those parts
	// with a Sync of lockguard's own, and the batch is one of its own.
	FlushedPure bool
	// TxStatus is the transaction status the batch will start in ('I', 'T',
	// 'E') when no earlier sync point is in flight, and 0 when one is.
	TxStatus byte
}

// BatchStmt is one statement of a batch.
type BatchStmt struct {
	SQL      []byte // the statement text
	Name     string // prepared statement name, "" for the unnamed one
	Executed bool   // an Execute (or the Query itself) runs it in this batch
	// Bind is the body of the Bind message behind the statement's Execute
	// in this batch (BindParam reads its values); nil when there is none or
	// it was bound in an earlier batch. Like SQL it is valid only during
	// Hooks.Batch.
	Bind []byte
}

// BindParam returns parameter n (1-based) of a Bind message body and its
// format code (0 text, 1 binary); ok is false when the message has no such
// parameter, its value is NULL or the message is malformed.
func BindParam(bind []byte, n int) (value []byte, format int16, ok bool) {
	// portal\0 statement\0 int16 nformats, int16 formats…, int16 nparams,
	// then per parameter int32 length (-1: NULL) and its bytes.
	for range 2 {
		i := bytes.IndexByte(bind, 0)
		if i < 0 {
			return nil, 0, false
		}
		bind = bind[i+1:]
	}
	if len(bind) < 2 {
		return nil, 0, false
	}
	nf := int(binary.BigEndian.Uint16(bind))
	if nf > 0x7fff || len(bind) < 2+2*nf+2 {
		return nil, 0, false
	}
	formats := bind[2 : 2+2*nf]
	bind = bind[2+2*nf:]
	np := int(binary.BigEndian.Uint16(bind))
	bind = bind[2:]
	if n < 1 || n > np || np > 0x7fff || nf > 1 && nf != np {
		return nil, 0, false
	}
	switch nf {
	case 0:
	case 1:
		format = int16(binary.BigEndian.Uint16(formats))
	default:
		format = int16(binary.BigEndian.Uint16(formats[2*(n-1):]))
	}
	for i := 1; ; i++ {
		if len(bind) < 4 {
			return nil, 0, false
		}
		l := int32(binary.BigEndian.Uint32(bind))
		bind = bind[4:]
		if l < 0 {
			if i == n {
				return nil, 0, false
			}
			continue
		}
		if int(l) > len(bind) {
			return nil, 0, false
		}
		if i == n {
			return bind[:l], format, true
		}
		bind = bind[l:]
	}
}

// Verdict says what to do with a batch. The zero Verdict forwards it.
type Verdict struct {
	// Hold runs first, on the client side, and may block (admission
	// control; the session leaves its event loop first). A non-nil result
	// refuses the batch with that error. ctx ends when the session does,
	// or, with the cause ErrCancelRequest, when the client cancels: Hold
	// should then return at once, and its error is replaced by
	// CanceledHeld (57014).
	Hold func(ctx context.Context) *Error

	// Refuse answers the batch with this error instead of running it. The
	// server is made to fail at the same point (so an open transaction is
	// aborted exactly as by any error) and its error is replaced by this one.
	// Severity "" means ERROR.
	Refuse *Error

	// Notices are sent as NoticeResponses before the batch's own responses.
	Notices []*Error

	// Before and After are statements sent as separate Query messages right
	// before and after the batch, in the same write; their responses are
	// swallowed (an error in them is logged). Never several statements in
	// one string: that would run them as one implicit transaction. After
	// is not sent after a batch that ends with a Flush: nothing can be
	// injected inside the batch it begins.
	Before, After []string

	// Retry, when set and the batch is Complete and not MidBatch, makes the
	// proxy wait until nothing else is in flight, hold the batch's responses
	// until its ReadyForQuery, and call Retry with the attempt number (1 for
	// the first) and the SQLSTATE of the batch's first error ("" for
	// success). If again is true the proxy waits delay and sends Before, the
	// batch and After once more; otherwise it delivers the held responses,
	// with the error replaced by final when final is not nil. A client
	// that cancels during the delay gets the held responses at once, their
	// error replaced by lockguard's 57014 (which Result gets too), and the
	// batch is not sent again.
	Retry func(attempt int, sqlstate string) (again bool, delay time.Duration, final *Error)

	// Result runs once when the batch's sync point completes, with the
	// SQLSTATE of its first error ("" for success) and, when it failed,
	// how many of its statements completed before that error (their
	// CommandComplete, EmptyQueryResponse or PortalSuspended came; 0 on
	// success): on the upstream goroutine, or, for a retried batch, on the
	// client goroutine after the final attempt. Either way it runs before
	// the next sync point's result. The parts of a batch continued after a
	// Flush share a sync point: each part's Result reports its first error,
	// wherever it came, with the statements completed before it counted
	// from the part's own first one (0 when an earlier part failed; more
	// than the part has when a later part failed), in the order of the
	// parts. It must not block.
	Result func(sqlstate string, completed int)
}
