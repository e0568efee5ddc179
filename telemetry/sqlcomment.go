package telemetry

import (
	"bytes"
	"net/url"

	"github.com/lockguard/lockguard/guard"
	"go.opentelemetry.io/otel/trace"
)

// maxCommentScan bounds how far from either end of a statement a
// sqlcommenter comment is looked for.
const maxCommentScan = 2048

// Comment is the sqlcommenter comment of a statement: the text between /* and
// */ of a leading or trailing block comment, valid while the statement is.
type Comment []byte

// FindComment returns the sqlcommenter comment of sql: a trailing block
// comment (where the specification puts it), else a leading one (where
// pg_tracing's examples put it). It never allocates and never looks inside
// the statement, so a "/*" within a string literal cannot confuse it: a
// trailing comment is found from the end of the text, and key=value pairs
// are URL-encoded, so they cannot contain "*/".
func FindComment(sql []byte) (Comment, bool) {
	t := sql
	for len(t) > 0 && (guard.IsSpace(t[len(t)-1]) || t[len(t)-1] == ';') {
		t = t[:len(t)-1]
	}
	if bytes.HasSuffix(t, []byte("*/")) {
		lo := max(0, len(t)-maxCommentScan)
		if i := bytes.LastIndex(t[lo:len(t)-2], []byte("/*")); i >= 0 {
			c := t[lo+i+2 : len(t)-2]
			if bytes.IndexByte(c, '=') >= 0 {
				return Comment(c), true
			}
		}
	}
	h := sql
	for len(h) > 0 && guard.IsSpace(h[0]) {
		h = h[1:]
	}
	if bytes.HasPrefix(h, []byte("/*")) {
		h = h[2:min(len(h), maxCommentScan)]
		if i := bytes.Index(h, []byte("*/")); i >= 0 && bytes.IndexByte(h[:i], '=') >= 0 {
			return Comment(h[:i]), true
		}
	}
	return nil, false
}

// Lookup returns the value of key, unquoted; it allocates only when the
// value has escapes to undo.
func (c Comment) Lookup(key string) (string, bool) {
	v, ok := c.raw(key)
	if !ok {
		return "", false
	}
	if bytes.IndexByte(v, '%') < 0 && bytes.IndexByte(v, '\\') < 0 {
		return string(v), true
	}
	s := string(bytes.ReplaceAll(v, []byte(`\'`), []byte(`'`)))
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	return s, true
}

// raw returns key's value with its quotes removed and escapes kept.
func (c Comment) raw(key string) ([]byte, bool) {
	rest := []byte(c)
	for len(rest) > 0 {
		var pair []byte
		// Split on the next comma outside quotes.
		inQuote := false
		i := 0
		for ; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '\'':
				inQuote = !inQuote
			case ',':
				if !inQuote {
					goto split
				}
			}
		}
	split:
		pair = rest[:min(i, len(rest))]
		if i < len(rest) {
			rest = rest[i+1:]
		} else {
			rest = nil
		}
		k, v, ok := bytes.Cut(bytes.TrimSpace(pair), []byte("="))
		if !ok || string(bytes.TrimSpace(k)) != key {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return nil, false
}

// SpanContext returns the W3C trace context of the comment's traceparent
// (and, when the parent is sampled, its tracestate), marked remote. Anything
// malformed gives the zero SpanContext: the value is untrusted input. It
// allocates only for a tracestate.
func (c Comment) SpanContext() trace.SpanContext {
	v, ok := c.raw("traceparent")
	if !ok {
		return trace.SpanContext{}
	}
	// 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
	if len(v) != 55 || v[0] != '0' || v[1] != '0' || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return trace.SpanContext{}
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !hexDecode(tid[:], v[3:35]) || !hexDecode(sid[:], v[36:52]) || !hexDecode(flags[:], v[53:55]) {
		return trace.SpanContext{}
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true}
	if cfg.TraceFlags.IsSampled() {
		if ts, ok := c.Lookup("tracestate"); ok {
			if st, err := trace.ParseTraceState(ts); err == nil {
				cfg.TraceState = st
			}
		}
	}
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

// hexDecode decodes lower-case hex (the W3C format allows no other) into dst.
func hexDecode(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := hexVal(src[2*i])
		lo, ok2 := hexVal(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
