package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Protocol constants that the proxy needs to recognise on the wire.
const (
	codeCancel    = 80877102 // CancelRequest
	codeSSL       = 80877103 // SSLRequest
	codeGSSENC    = 80877104 // GSSENCRequest
	protoMajor3   = 3
	headerLen     = 5 // type byte + int32 length
	maxStartupLen = 10000

	// pgMaxMessage is PostgreSQL's own limit for a frontend message
	// (PQ_LARGE_MESSAGE_LIMIT, 1 GiB - 1). Longer lengths are never valid.
	pgMaxMessage = 1<<30 - 1
)

// SQLSTATE codes lockguard itself answers with.
const (
	CodeProtocolViolation  = "08P01"
	CodeConnectionFailure  = "08006"
	CodeTooManyConnections = "53300"
	CodeAdminShutdown      = "57P01"
	CodeInvalidAuthSpec    = "28000"
	CodeFeatureNotSupp     = "0A000"
	CodeQueryCanceled      = "57014"
)

// ErrProtocol reports a frontend or backend message that breaks the protocol.
var ErrProtocol = errors.New("protocol violation")

// Error is an error that reaches the client as an ErrorResponse.
type Error struct {
	Severity string // ERROR or FATAL; "" means FATAL
	Code     string // SQLSTATE
	Message  string // must start with "lockguard: "
	Detail   string
	Hint     string
}

func (e *Error) Error() string { return e.Message }

// appendErrorResponse appends e as an ErrorResponse message to dst.
func appendErrorResponse(dst []byte, e *Error) []byte {
	sev := e.Severity
	if sev == "" {
		sev = "FATAL"
	}
	msg := pgproto3.ErrorResponse{
		Severity:            sev,
		SeverityUnlocalized: sev,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	out, err := msg.Encode(dst)
	if err != nil {
		panic("BUG: encoding ErrorResponse: " + err.Error())
	}
	return out
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// startupParams parses the key/value list of a StartupMessage body (after the
// version). It returns nil and an error when the list is malformed.
func startupParams(b []byte) (map[string]string, error) {
	params := make(map[string]string, 8)
	for len(b) > 0 {
		if b[0] == 0 {
			if len(b) != 1 {
				return nil, fmt.Errorf("%w: data after the startup parameter list", ErrProtocol)
			}
			return params, nil
		}
		k, rest, ok := cstring(b)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated startup parameter name", ErrProtocol)
		}
		v, rest2, ok := cstring(rest)
		if !ok {
			return nil, fmt.Errorf("%w: unterminated value of startup parameter %q", ErrProtocol, k)
		}
		params[string(k)] = string(v)
		b = rest2
	}
	return nil, fmt.Errorf("%w: startup parameter list is not terminated", ErrProtocol)
}

// cstring splits a NUL-terminated string off b without allocating.
func cstring(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}
