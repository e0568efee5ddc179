package guard

import (
	"math/rand/v2"
	"time"
)

// Backoff is the retry schedule for a DDL that gave up its place in the lock
// queue (lock_timeout) or was made to yield: exponential with full jitter,
// bounded by attempts and by a total deadline.
type Backoff struct {
	Attempts int           // total tries, the first included; ≤ 1 means no retry
	Base     time.Duration // upper bound of the first delay
	Cap      time.Duration // upper bound of any delay
	Deadline time.Duration // no new attempt starts after this much time since the first
}

// DefaultBackoff: 5 tries over at most 30 s, delays drawn from [0, 200 ms ·
// 2^n] capped at 5 s. With the default 2 s lock_timeout the worst case is
// about 5 × 2 s of waiting plus ≤ 15 s of sleeping.
var DefaultBackoff = Backoff{Attempts: 5, Base: 200 * time.Millisecond, Cap: 5 * time.Second, Deadline: 30 * time.Second}

// Delay returns the wait before attempt (2 for the first retry), drawn with
// full jitter, and whether that attempt may start at all given that elapsed
// time has passed since the first attempt started.
func (b Backoff) Delay(attempt int, elapsed time.Duration) (time.Duration, bool) {
	if attempt > b.Attempts || attempt < 2 {
		return 0, false
	}
	ceiling := b.Base << min(attempt-2, 30)
	if ceiling <= 0 || ceiling > b.Cap {
		ceiling = b.Cap
	}
	d := time.Duration(0)
	if ceiling > 0 {
		d = time.Duration(rand.Int64N(int64(ceiling) + 1))
	}
	if b.Deadline > 0 && elapsed+d >= b.Deadline {
		return 0, false
	}
	return d, true
}
