// Command schedstat reads `perf script` output of sched:sched_switch events
// recorded on all CPUs and reports, for the threads of one command name, how
// often the kernel preempted them, by whom, how long they then waited to run
// again and how many other tasks ran on that CPU meanwhile: the scheduling
// cost that separates a proxy from another one with the same system calls
// (bench/compare/README.md, "Where the remaining gap is").
//
//	perf record -e sched:sched_switch -a -o sw.data -- sleep 2   # during a pgbench run
//	perf script -i sw.data | go run ./bench/schedstat -comm lockguard
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

// One sched_switch line of perf script's default output.
var switchLine = regexp.MustCompile(`\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)`)

type stats struct {
	seconds     float64
	preempted   int            // switched out while runnable
	slept       int            // switched out to wait
	running     float64        // seconds on a CPU
	waited      float64        // seconds runnable but not running, after a preemption
	preemptedBy map[string]int // the command that ran instead
	// others counts the tasks that ran on the CPU of a preempted thread
	// before it ran again there; resumed counts those waits, moved the
	// threads that ran again on another CPU.
	others, resumed, moved int
}

func analyze(r io.Reader, comm string) (*stats, error) {
	st := &stats{preemptedBy: map[string]int{}}
	type out struct {
		at       float64
		runnable bool
		cpu      string
		switches int // the CPU's switch count when the thread left it
	}
	switches := map[string]int{} // CPU -> context switches seen on it
	outs := map[string]out{}     // thread -> when and how it left the CPU
	on := map[string]float64{}   // thread -> when it got a CPU
	first, last := -1.0, -1.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := switchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		cpu := m[1]
		switches[cpu]++
		t, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, err
		}
		if first < 0 {
			first = t
		}
		last = t
		prevComm, prevPID, state, nextComm, nextPID := m[3], m[4], m[5], m[6], m[7]
		if prevComm == comm {
			if t0, ok := on[prevPID]; ok {
				st.running += t - t0
				delete(on, prevPID)
			}
			runnable := state == "R" || state == "R+"
			if runnable {
				st.preempted++
				st.preemptedBy[nextComm]++
			} else {
				st.slept++
			}
			outs[prevPID] = out{t, runnable, cpu, switches[cpu]}
		}
		if nextComm == comm {
			on[nextPID] = t
			if o, ok := outs[nextPID]; ok && o.runnable {
				st.waited += t - o.at
				if o.cpu == cpu {
					st.resumed++
					st.others += switches[cpu] - o.switches
				} else {
					st.moved++
				}
			}
			delete(outs, nextPID)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if last <= first {
		return nil, fmt.Errorf("no sched_switch events in the input")
	}
	st.seconds = last - first
	return st, nil
}

func (st *stats) write(w io.Writer, comm string) {
	d := st.seconds
	fmt.Fprintf(w, "%s over %.2f s:\n", comm, d)
	fmt.Fprintf(w, "  running          %.0f%% of a CPU\n", st.running/d*100)
	fmt.Fprintf(w, "  preempted        %.0f/s\n", float64(st.preempted)/d)
	fmt.Fprintf(w, "  slept            %.0f/s\n", float64(st.slept)/d)
	avg := 0.0
	if st.preempted > 0 {
		avg = st.waited / float64(st.preempted) * 1e6
	}
	fmt.Fprintf(w, "  runnable, waiting after a preemption: %.0f ms/s (%.0f µs each)\n", st.waited/d*1000, avg)
	if st.resumed > 0 {
		fmt.Fprintf(w, "  tasks run before it ran again: %.1f on average (%d waits on the same CPU, %d moved to another)\n",
			float64(st.others)/float64(st.resumed), st.resumed, st.moved)
	}
	type kv struct {
		k string
		v int
	}
	var by []kv
	for k, v := range st.preemptedBy {
		by = append(by, kv{k, v})
	}
	sort.Slice(by, func(i, j int) bool { return by[i].v > by[j].v || by[i].v == by[j].v && by[i].k < by[j].k })
	for i, e := range by {
		if i == 5 {
			break
		}
		fmt.Fprintf(w, "  preempted by %-16s %.0f/s\n", e.k, float64(e.v)/d)
	}
}

func main() {
	comm := flag.String("comm", "lockguard", "command name (perf's comm) of the threads to report on")
	flag.Parse()
	st, err := analyze(os.Stdin, *comm)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schedstat:", err)
		os.Exit(1)
	}
	st.write(os.Stdout, *comm)
}
