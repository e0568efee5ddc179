package pgmonitor

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CancelChannel is the LISTEN/NOTIFY channel of the CancelBus.
const CancelChannel = "lockguard_cancel"

// cancelMaxAge is how old a notification may be, by its own clock, and
// still be acted on: replicas' clocks may differ by a little, and a
// replayed notification is worthless after it.
const cancelMaxAge = 30 * time.Second

// CancelBus tells the lockguard replicas in front of one PostgreSQL about
// CancelRequests, through PostgreSQL's own LISTEN/NOTIFY on the monitor
// connection's database.
//
// Why: a client sends its CancelRequest on a new connection, which a load
// balancer may give to another replica. That replica forwards it to
// PostgreSQL, which cancels whatever the backend runs; but while the
// session waits in its own replica (a statement held back by admission, a
// DDL between its retries) the backend is idle and ignores the cancel, and
// the replica that has the session never hears of it. With the bus, the
// replica that finds no session of its own for a key publishes the key,
// and the replica that has the session ends its wait as if the cancel had
// come to it.
//
// Any role may LISTEN and NOTIFY on any channel, so a notification carries
// no key: only the time and an HMAC-SHA256 of the key and that time under
// Secret, which the replicas share and database roles do not know.
// Without the secret a notification can neither be forged nor turned back
// into a key, and one replayed is ignored once cancelMaxAge has passed.
type CancelBus struct {
	// Connect opens the connection that listens (the monitor connection's
	// settings); Pool sends the notifications.
	Connect func(ctx context.Context) (*pgx.Conn, error)
	Pool    *pgxpool.Pool
	// Secret is shared by the replicas (replica-secret).
	Secret []byte
	// Cancel ends the waits of this replica's sessions whose backend key
	// match accepts, and returns how many (proxy.Server.CancelWaits).
	Cancel func(match func(key []byte) bool) int
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	sending atomic.Int32 // notifications being sent
}

// maxSending bounds the notifications in flight: anyone who reaches
// lockguard's port may send CancelRequests, and each one that matches no
// session here would otherwise hold a goroutine for up to 5 s.
const maxSending = 16

func (b *CancelBus) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// sign returns the HMAC of key at Unix second at.
func (b *CancelBus) sign(key []byte, at int64) []byte {
	m := hmac.New(sha256.New, b.Secret)
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(at))
	m.Write(t[:])
	m.Write(key)
	return m.Sum(nil)
}

// payload is the notification for key: "v1 UNIX-SECONDS HEX-HMAC".
func (b *CancelBus) payload(key []byte) string {
	at := b.now().Unix()
	return fmt.Sprintf("v1 %d %s", at, hex.EncodeToString(b.sign(key, at)))
}

// Publish tells the other replicas about a CancelRequest with backend key
// key that matched no session here. It does not wait: the notification is
// sent on its own goroutine, with a deadline of 5 s; with maxSending in
// flight already it is dropped (and logged). key is not kept.
func (b *CancelBus) Publish(key []byte) {
	if b.sending.Add(1) > maxSending {
		b.sending.Add(-1)
		b.Logger.Warn("too many cancel requests to tell the other replicas about at once; this one reaches only PostgreSQL")
		return
	}
	p := b.payload(key)
	go func() {
		defer b.sending.Add(-1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := b.Pool.Exec(ctx, "SELECT pg_notify($1, $2)", CancelChannel, p); err != nil {
			b.Logger.Warn("telling the other replicas about a cancel request failed", "err", err)
		}
	}()
}

// Deliver acts on one notification's payload: it ends the waits of the
// sessions here whose key it names. It returns how many.
func (b *CancelBus) Deliver(payload string) int {
	f := strings.Fields(payload)
	if len(f) != 3 || f[0] != "v1" {
		return 0
	}
	at, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	if d := b.now().Sub(time.Unix(at, 0)); d > cancelMaxAge || d < -cancelMaxAge {
		return 0
	}
	mac, err := hex.DecodeString(f[2])
	if err != nil || len(mac) != sha256.Size {
		return 0
	}
	return b.Cancel(func(key []byte) bool { return hmac.Equal(mac, b.sign(key, at)) })
}

// Run listens until ctx is done, opening the connection again (after 1 s,
// doubling up to 30 s) when it fails.
func (b *CancelBus) Run(ctx context.Context) {
	delay := time.Second
	for ctx.Err() == nil {
		err := b.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		b.Logger.Warn("listening for other replicas' cancel requests failed; trying again", "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// listen opens the connection, listens and delivers until it fails.
func (b *CancelBus) listen(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, err := b.Connect(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+CancelChannel); err != nil {
		return err
	}
	b.Logger.Debug("listening for other replicas' cancel requests", "channel", CancelChannel)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if k := b.Deliver(n.Payload); k > 0 {
			b.Logger.Info("a cancel request that came to another replica ended a wait here", "sessions", k)
		}
	}
}
