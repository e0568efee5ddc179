package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// machine describes where the run happened, for the report.
type machine struct {
	cpu        string // model name from /proc/cpuinfo
	cores      int
	memory     string
	kernel     string
	postgres   string
	pgbouncer  string
	pgbench    string
	goVersion  string
	commit     string // git commit of the checkout lockguard was built from
	loadBefore string // /proc/loadavg at the start
}

func describeMachine(ctx context.Context, root string, e *env, pgbouncerBin string) machine {
	m := machine{
		cpu:        procField("/proc/cpuinfo", "model name"),
		cores:      runtime.NumCPU(),
		memory:     procField("/proc/meminfo", "MemTotal"),
		kernel:     strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		pgbouncer:  firstLine(output(ctx, pgbouncerBin, "--version")),
		pgbench:    firstLine(output(ctx, "pgbench", "--version")),
		goVersion:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		loadBefore: strings.Join(strings.Fields(readFile("/proc/loadavg"))[:3], " "),
	}
	if kib, err := strconv.ParseInt(strings.Fields(m.memory + " 0")[0], 10, 64); err == nil && kib > 0 {
		m.memory = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
	}
	if err := e.admin.QueryRow(ctx, "SELECT version()").Scan(&m.postgres); err != nil {
		m.postgres = "unknown: " + err.Error()
	}
	if root != "" {
		m.commit = strings.TrimSpace(output(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD"))
		if dirty := strings.TrimSpace(output(ctx, "git", "-C", root, "status", "--porcelain")); dirty != "" {
			m.commit += fmt.Sprintf(" plus uncommitted changes in %d paths", len(strings.Split(dirty, "\n")))
		}
	}
	return m
}

// backgroundLoad measures the share of all cores that was busy over d, while
// this program itself is idle: work of others that competes with the run.
func backgroundLoad(ctx context.Context, d time.Duration) float64 {
	busy0, total0 := cpuTotals()
	select {
	case <-ctx.Done():
		return 0
	case <-time.After(d):
	}
	busy1, total1 := cpuTotals()
	if total1 <= total0 {
		return 0
	}
	return float64(busy1-busy0) / float64(total1-total0)
}

// cpuTotals returns busy and total jiffies of all cores from /proc/stat.
func cpuTotals() (busy, total int64) {
	line := firstLine(readFile("/proc/stat")) // "cpu  user nice system idle iowait irq softirq steal ..."
	f := strings.Fields(line)
	for i, v := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total
}

// procField returns the value of the first "name: value" line of a /proc file.
func procField(file, name string) string {
	for _, line := range strings.Split(readFile(file), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func output(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// cpuMeter separates the CPU time this benchmark uses from the CPU time
// everything else on the machine uses while a run is going: on a shared
// machine, other users' work is the main source of noise.
type cpuMeter struct {
	postmaster int // pid of our PostgreSQL's postmaster
}

// cpuSample is a reading of the machine's busy time and of our PostgreSQL's.
type cpuSample struct {
	at       time.Time
	busy     time.Duration // all cores, everyone
	postgres time.Duration // our postmaster and its children, living and reaped
}

func (m cpuMeter) sample() cpuSample {
	busy, _ := cpuTotals()
	return cpuSample{
		at:       time.Now(),
		busy:     time.Duration(busy) * time.Second / time.Duration(clockTicks),
		postgres: processTreeCPU(m.postmaster),
	}
}

// processTreeCPU returns the CPU time of pid, of its reaped children and of
// its living children (PostgreSQL's backends are all children of the
// postmaster, and a backend that exits moves its time into the postmaster's
// cutime and cstime).
func processTreeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	total := time.Duration(0)
	if st, err := readStat(pid); err == nil {
		total += st.utime + st.stime + st.cutime + st.cstime
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if st, err := readStat(child); err == nil && st.ppid == pid {
			total += st.utime + st.stime
		}
	}
	return total
}

// postmasterPID reads the first line of postmaster.pid in dataDir.
func postmasterPID(dataDir string) int {
	pid, _ := strconv.Atoi(firstLine(readFile(filepath.Join(dataDir, "postmaster.pid"))))
	return pid
}
