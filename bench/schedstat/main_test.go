package main

import (
	"math"
	"strings"
	"testing"
)

// Lines as perf script prints sched:sched_switch events (perf 6.x).
const sample = `
            lg  101 [000]   10.000000: sched:sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=lg next_pid=101 next_prio=120
            lg  101 [000]   10.000300: sched:sched_switch: prev_comm=lg prev_pid=101 prev_prio=120 prev_state=R ==> next_comm=postgres next_pid=7 next_prio=120
      postgres    7 [000]   10.000500: sched:sched_switch: prev_comm=postgres prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=lg next_pid=101 next_prio=120
            lg  101 [000]   10.000600: sched:sched_switch: prev_comm=lg prev_pid=101 prev_prio=120 prev_state=S ==> next_comm=pgbench next_pid=9 next_prio=120
       pgbench    9 [000]   10.001000: sched:sched_switch: prev_comm=pgbench prev_pid=9 prev_prio=120 prev_state=R+ ==> next_comm=lg next_pid=102 next_prio=120
            lg  102 [000]   10.001100: sched:sched_switch: prev_comm=lg prev_pid=102 prev_prio=120 prev_state=R ==> next_comm=pgbench next_pid=9 next_prio=120
       pgbench    9 [000]   10.002000: sched:sched_switch: prev_comm=pgbench prev_pid=9 prev_prio=120 prev_state=S ==> next_comm=lg next_pid=102 next_prio=120
`

func TestAnalyze(t *testing.T) {
	st, err := analyze(strings.NewReader(sample), "lg")
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if st.preempted != 2 || st.slept != 1 {
		t.Errorf("preempted %d, slept %d; want 2 and 1", st.preempted, st.slept)
	}
	// On CPU: 101 for 300 µs and 100 µs, 102 for 100 µs.
	if !near(st.running, 500e-6) {
		t.Errorf("running %v s, want 500 µs", st.running)
	}
	// 101 waited 200 µs after its preemption, 102 900 µs; the wait after
	// 101's sleep is not counted.
	if !near(st.waited, 1100e-6) {
		t.Errorf("waited %v s, want 1100 µs", st.waited)
	}
	if st.preemptedBy["postgres"] != 1 || st.preemptedBy["pgbench"] != 1 {
		t.Errorf("preempted by %v", st.preemptedBy)
	}
	if !near(st.seconds, 2e-3) {
		t.Errorf("span %v s, want 2 ms", st.seconds)
	}
	var out strings.Builder
	st.write(&out, "lg")
	for _, want := range []string{"running          25% of a CPU", "preempted        1000/s", "550 ms/s (550 µs each)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestAnalyzeEmpty(t *testing.T) {
	if _, err := analyze(strings.NewReader("no events here\n"), "lg"); err == nil {
		t.Error("no error for input without sched_switch events")
	}
}

// A thread preempted on CPU 1 waits there behind three other tasks; another
// preempted on CPU 0 runs again on CPU 1 and is counted as moved.
const crowded = `
 lg 101 [001] 20.000000: sched:sched_switch: prev_comm=lg prev_pid=101 prev_prio=120 prev_state=R ==> next_comm=postgres next_pid=7 next_prio=120
 lg 102 [000] 20.000010: sched:sched_switch: prev_comm=lg prev_pid=102 prev_prio=120 prev_state=R ==> next_comm=pgbench next_pid=9 next_prio=120
 postgres 7 [001] 20.000100: sched:sched_switch: prev_comm=postgres prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=postgres next_pid=8 next_prio=120
 postgres 8 [001] 20.000200: sched:sched_switch: prev_comm=postgres prev_pid=8 prev_prio=120 prev_state=S ==> next_comm=pgbench next_pid=10 next_prio=120
 pgbench 10 [001] 20.000300: sched:sched_switch: prev_comm=pgbench prev_pid=10 prev_prio=120 prev_state=S ==> next_comm=lg next_pid=101 next_prio=120
 lg 101 [001] 20.000400: sched:sched_switch: prev_comm=lg prev_pid=101 prev_prio=120 prev_state=S ==> next_comm=lg next_pid=102 next_prio=120
`

func TestAnalyzeTasksBeforeResuming(t *testing.T) {
	st, err := analyze(strings.NewReader(crowded), "lg")
	if err != nil {
		t.Fatal(err)
	}
	if st.resumed != 1 || st.others != 3 || st.moved != 1 {
		t.Errorf("resumed %d after %d others, moved %d; want 1 after 3, 1 moved", st.resumed, st.others, st.moved)
	}
	var out strings.Builder
	st.write(&out, "lg")
	if want := "tasks run before it ran again: 3.0 on average (1 waits on the same CPU, 1 moved to another)"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
}
