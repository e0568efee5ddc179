// Command syscallgap reads `perf script` output of raw_syscalls events
// recorded on one process and reports, per pair of consecutive system calls
// of a thread, how long the thread spent between them in user space, and how
// long each call took: for a proxy, the time from its wait returning to its
// read, from the read to the send (its own work on the message, split by the
// descriptor sent to) and in each call. Those are the parts of a relay a
// proxy controls; comparing them with PgBouncer's on the same workload shows
// where a round trip costs more (bench/compare/README.md, "Where the
// remaining gap is").
//
//	perf record -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p PID -o sc.data -- sleep 2   # during a pgbench run
//	perf script -i sc.data -F tid,time,event,trace | go run ./bench/syscallgap
//
// System call numbers are named for x86-64.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
)

// One raw_syscalls line of `perf script -F tid,time,event,trace`:
//
//	25332 43862.413994: raw_syscalls:sys_enter: NR 45 (8, 7f89e82bf03c, 1000, 0, 0, 0)
//	25332 43862.413998:  raw_syscalls:sys_exit: NR 45 = 70
var syscallLine = regexp.MustCompile(`^\s*(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+) (?:\(([0-9a-f]+)|=)`)

// names are the x86-64 system calls a proxy makes per message.
var names = map[int]string{
	0: "read", 1: "write", 7: "poll", 35: "nanosleep", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg",
	202: "futex", 232: "epoll_wait", 271: "ppoll", 281: "epoll_pwait", 426: "io_uring_enter",
}

// sends are the calls whose descriptor splits a segment that ends with them.
var sends = map[int]bool{1: true, 44: true, 46: true}

func name(nr int) string {
	if n, ok := names[nr]; ok {
		return n
	}
	return "NR " + strconv.Itoa(nr)
}

type seg struct {
	n   int
	sum float64 // µs
}

type report struct {
	between map[string]*seg // "a → b" (fd of b when it sends)
	in      map[string]*seg // time in the call
}

func (s *seg) add(d float64) { s.n++; s.sum += d }

func get(m map[string]*seg, k string) *seg {
	s := m[k]
	if s == nil {
		s = &seg{}
		m[k] = s
	}
	return s
}

func analyze(r io.Reader) (*report, error) {
	rep := &report{between: map[string]*seg{}, in: map[string]*seg{}}
	type state struct {
		enterNR, exitNR int
		enterAt, exitAt float64
		inCall, exited  bool
	}
	threads := map[string]*state{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := syscallLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, err
		}
		t *= 1e6 // µs
		nr, _ := strconv.Atoi(m[4])
		st := threads[m[1]]
		if st == nil {
			st = &state{}
			threads[m[1]] = st
		}
		if m[3] == "enter" {
			if st.exited {
				k := name(st.exitNR) + " → " + name(nr)
				if sends[nr] && m[5] != "" {
					fd, _ := strconv.ParseInt(m[5], 16, 64)
					k += " fd " + strconv.FormatInt(fd, 10)
				}
				get(rep.between, k).add(t - st.exitAt)
			}
			st.enterNR, st.enterAt, st.inCall = nr, t, true
			continue
		}
		if st.inCall && st.enterNR == nr {
			get(rep.in, name(nr)).add(t - st.enterAt)
		}
		st.exitNR, st.exitAt, st.inCall, st.exited = nr, t, false, true
	}
	return rep, sc.Err()
}

func (rep *report) write(w io.Writer, min int) {
	print := func(title string, m map[string]*seg) {
		keys := make([]string, 0, len(m))
		for k, s := range m {
			if s.n >= min {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			return m[keys[i]].n > m[keys[j]].n || m[keys[i]].n == m[keys[j]].n && keys[i] < keys[j]
		})
		fmt.Fprintf(w, "%-40s %8s %9s\n", title, "count", "avg µs")
		for _, k := range keys {
			fmt.Fprintf(w, "%-40s %8d %9.2f\n", k, m[k].n, m[k].sum/float64(m[k].n))
		}
	}
	print("between system calls (user space)", rep.between)
	fmt.Fprintln(w)
	print("in the call", rep.in)
}

func main() {
	min := flag.Int("min", 100, "leave out pairs seen fewer times")
	flag.Parse()
	rep, err := analyze(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "syscallgap:", err)
		os.Exit(1)
	}
	rep.write(os.Stdout, *min)
}
