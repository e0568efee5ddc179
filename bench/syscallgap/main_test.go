package main

import (
	"math"
	"strings"
	"testing"
)

// Lines as `perf script -F tid,time,event,trace` prints raw_syscalls events
// (perf 6.x): thread 25 relays one message each way; thread 26's futex
// interleaves and must not mix with it.
const sample = `
   25 100.000000: raw_syscalls:sys_enter: NR 281 (6, 7f0, 80, ffffffffffffffff, 0, 0)
   26 100.000001: raw_syscalls:sys_enter: NR 202 (c000, 80, 0, 0, 0, 0)
   25 100.000050:  raw_syscalls:sys_exit: NR 281 = 1
   25 100.000053: raw_syscalls:sys_enter: NR 45 (c, 7f89, 1000, 40, 0, 0)
   25 100.000056:  raw_syscalls:sys_exit: NR 45 = 70
   25 100.000061: raw_syscalls:sys_enter: NR 44 (d, 7f89, 46, 4040, 0, 0)
   26 100.000062:  raw_syscalls:sys_exit: NR 202 = 0
   25 100.000075:  raw_syscalls:sys_exit: NR 44 = 70
   25 100.000081: raw_syscalls:sys_enter: NR 281 (6, 7f0, 80, ffffffffffffffff, 0, 0)
   25 100.000181:  raw_syscalls:sys_exit: NR 281 = 1
   25 100.000183: raw_syscalls:sys_enter: NR 45 (d, 7f89, 1000, 40, 0, 0)
   25 100.000186:  raw_syscalls:sys_exit: NR 45 = 20
   25 100.000188: raw_syscalls:sys_enter: NR 44 (c, 7f89, 20, 4040, 0, 0)
   25 100.000200:  raw_syscalls:sys_exit: NR 44 = 20
not a syscall line
`

func TestAnalyze(t *testing.T) {
	rep, err := analyze(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		n   int
		avg float64
	}{
		"epoll_pwait → recvfrom":    {2, 2.5},
		"recvfrom → sendto fd 13":   {1, 5},
		"recvfrom → sendto fd 12":   {1, 2},
		"sendto → epoll_pwait":      {1, 6},
		"in:epoll_pwait":            {2, 75},
		"in:recvfrom":               {2, 3},
		"in:sendto":                 {2, 13},
		"in:futex":                  {1, 61},
		"epoll_pwait → epoll_pwait": {0, 0},
	}
	for k, w := range want {
		m, key := rep.between, k
		if after, ok := strings.CutPrefix(k, "in:"); ok {
			m, key = rep.in, after
		}
		s := m[key]
		if w.n == 0 {
			if s != nil {
				t.Errorf("%s: %d seen, want none", k, s.n)
			}
			continue
		}
		if s == nil || s.n != w.n || math.Abs(s.sum/float64(s.n)-w.avg) > 1e-3 {
			t.Errorf("%s: %+v, want %d at %.1f µs", k, s, w.n, w.avg)
		}
	}
	if len(rep.between) != 4 {
		t.Errorf("pairs %v, want the 4 above", rep.between)
	}
	var b strings.Builder
	rep.write(&b, 1)
	if !strings.Contains(b.String(), "recvfrom → sendto fd 13") {
		t.Errorf("report lacks a pair:\n%s", b.String())
	}
}
