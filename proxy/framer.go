package proxy

import (
	"fmt"
	"io"
	"sync"
)

// bufSize matches PostgreSQL's own socket buffers (PQ_RECV_BUFFER_SIZE).
const bufSize = 8 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// bulkBufSize is the buffer a framer reads into while bytes arrive faster than
// bufSize per read (COPY, large results): one read and one write per 64 KiB
// instead of per 8 KiB. Idle sessions hold only their bufSize buffer.
const bulkBufSize = 64 << 10

var bulkPool = sync.Pool{New: func() any { b := make([]byte, bulkBufSize); return &b }}

// framer splits one direction of a protocol stream into messages while the
// bytes themselves are relayed unchanged. It reads as much as is ready with one
// Read, and the caller writes every message that became complete with one Write,
// so messages that arrive together leave together.
//
// Messages whose type the caller wants whole are kept in the buffer until all of
// their bytes have arrived (growing it up to limit); all other messages are
// streamed: their bytes pass through as they come, whatever their length.
type framer struct {
	pooled *[]byte
	buf    []byte
	start  int // first unprocessed byte
	end    int // end of data read so far
	skip   int // bytes of a streamed message still to pass through
	limit  int // largest message (type byte included) kept whole
	// streamLimit is the largest length field accepted for any message.
	streamLimit int
	// keep, when not -1, is the first byte of a held batch: bytes from
	// there on are kept across fills even though they were framed.
	keep int
	// bulk is the bulkPool buffer in use, or nil; hot says the last read
	// returned at least bufSize bytes, so more are probably queued.
	bulk *[]byte
	hot  bool
	// src, when set, is the socket fill reads from (instead of its
	// argument), and dst the socket this direction's bytes are written to;
	// both set by relay for plain sockets (sockio_linux.go).
	src, dst *rawSock
	// full says the last read filled the buffer: more bytes may be queued.
	full bool
	// pre is set when an event loop read for the next fill (prefetched):
	// preN bytes into the room after end, or preErr.
	pre    bool
	preN   int
	preErr error
}

func (f *framer) init(limit, streamLimit int) {
	f.pooled = bufPool.Get().(*[]byte)
	f.buf = *f.pooled
	f.limit = limit
	f.streamLimit = streamLimit
	f.keep = -1
}

// release returns the pooled buffer. The framer must not be used afterwards.
func (f *framer) release() {
	if f.pooled != nil {
		bufPool.Put(f.pooled)
		f.pooled = nil
	}
	if f.bulk != nil {
		bulkPool.Put(f.bulk)
		f.bulk = nil
	}
	f.buf = nil
	f.src, f.dst = nil, nil
}

// fill reads once from r, after making room in the buffer. When an event
// loop already read for it (prefetched), it takes those bytes instead.
func (f *framer) fill(r io.Reader) error {
	if f.pre {
		f.pre = false
		// Nothing to read is the loop's answer only while the loop
		// relays the session; once it left, a goroutine waits for bytes.
		if f.preErr != errWouldBlock || f.src == nil || f.src.nowait {
			// room was made for the read and nothing moved since.
			return f.filled(f.preN, f.preErr, len(f.buf)-f.end)
		}
	}
	p := f.room()
	var n int
	var err error
	if f.src != nil {
		n, err = f.src.Read(p)
	} else {
		n, err = r.Read(p)
	}
	return f.filled(n, err, len(p))
}

// prefetched records a read an event loop made into the space room
// returned: the next fill takes it.
func (f *framer) prefetched(n int, err error) {
	f.pre, f.preN, f.preErr = true, n, err
}

// room makes room in the buffer for the next read and returns that space.
func (f *framer) room() []byte {
	base := f.start
	if f.keep >= 0 {
		base = f.keep
	}
	if base == f.end {
		f.start, f.end = 0, 0
		if f.keep >= 0 {
			f.keep = 0
		}
		switch {
		case f.pooled == nil:
		case f.hot:
			// Bytes arrive faster than bufSize per read: read in bulk.
			if f.bulk == nil {
				f.bulk = bulkPool.Get().(*[]byte)
			}
			f.buf = *f.bulk
		case len(f.buf) > bufSize:
			// Back to the small buffer once empty: drop a grown one,
			// return the bulk one.
			f.buf = *f.pooled
			if f.bulk != nil {
				bulkPool.Put(f.bulk)
				f.bulk = nil
			}
		}
	} else if f.end == len(f.buf) || len(f.buf)-f.end < headerLen {
		if base > 0 {
			n := copy(f.buf, f.buf[base:f.end])
			f.start -= base
			f.end = n
			if f.keep >= 0 {
				f.keep = 0
			}
		} else {
			// A whole message or a held batch fills the buffer: grow it
			// as its bytes arrive (next bounds a message by limit, the
			// caller the held size).
			nb := make([]byte, 2*len(f.buf))
			copy(nb, f.buf[:f.end])
			f.buf = nb
		}
	}
	return f.buf[f.end:]
}

// filled accounts for a read of n bytes into space bytes of room.
func (f *framer) filled(n int, err error, space int) error {
	f.end += n
	f.hot = n >= bufSize
	f.full = n == space
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// frame is one unit returned by next.
type frame struct {
	typ   byte
	msg   []byte // the whole message, header included; nil for a streamed one
	whole bool
}

// passRest consumes what the buffer holds of the rest of a streamed
// message, and returns how much of it is still to come.
func (f *framer) passRest() int {
	if f.skip > 0 {
		n := min(f.skip, f.end-f.start)
		f.start += n
		f.skip -= n
	}
	return f.skip
}

// next returns the next complete message (when wanted whole) or consumes the
// header of a streamed message. It reports ok=false when more bytes must be
// read first. The returned msg is valid until the next call to fill.
func (f *framer) next(whole *[256]bool) (fr frame, ok bool, err error) {
	if f.passRest() > 0 {
		return frame{}, false, nil
	}
	if f.end-f.start < headerLen {
		return frame{}, false, nil
	}
	typ := f.buf[f.start]
	n := int(be32(f.buf[f.start+1:]))
	if n < 4 || n > f.streamLimit {
		return frame{}, false, fmt.Errorf("%w: message type %q with invalid length %d", ErrProtocol, typ, n)
	}
	total := 1 + n
	if !whole[typ] {
		f.skip = total
		n := min(f.skip, f.end-f.start)
		f.start += n
		f.skip -= n
		return frame{typ: typ}, true, nil
	}
	if total > f.limit {
		return frame{}, false, &tooLarge{typ: typ, size: total, limit: f.limit}
	}
	if f.end-f.start < total {
		return frame{}, false, nil
	}
	fr = frame{typ: typ, msg: f.buf[f.start : f.start+total], whole: true}
	f.start += total
	return fr, true, nil
}

// makeRoom prepares the buffer for the rest of an incomplete message of total
// bytes at f.start that is wanted whole. The caller must have written out
// everything before f.start, which this moves to the front of the buffer.
//
// It does not reserve total bytes: a header may announce up to the maximum
// message size before a single byte of the body has arrived, and a client
// sending just headers must not make lockguard allocate that much. The buffer
// grows in fill instead, doubling each time the bytes that did arrive fill
// it, so its size stays within twice what the peer actually sent.
func (f *framer) makeRoom(total int) {
	base := f.start
	if f.keep >= 0 {
		base = f.keep
	}
	if base == 0 || f.start+total <= len(f.buf) {
		return
	}
	copy(f.buf, f.buf[base:f.end])
	f.start -= base
	f.end -= base
	if f.keep >= 0 {
		f.keep = 0
	}
}

// pendingWhole reports the size of an incomplete message at f.start that is
// wanted whole, or 0.
func (f *framer) pendingWhole(whole *[256]bool) int {
	if f.skip > 0 || f.end-f.start < headerLen {
		return 0
	}
	typ := f.buf[f.start]
	if !whole[typ] {
		return 0
	}
	total := 1 + int(be32(f.buf[f.start+1:]))
	if f.end-f.start >= total {
		return 0
	}
	return total
}

// tooLarge is returned for a message longer than the configured limit.
type tooLarge struct {
	typ   byte
	size  int
	limit int
}

func (e *tooLarge) Error() string {
	return fmt.Sprintf("message type %q of %d bytes exceeds the limit of %d bytes", e.typ, e.size, e.limit)
}
