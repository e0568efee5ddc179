package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// goBenchResult is the outcome of the Go benchmarks of ./bench.
type goBenchResult struct {
	ran     bool   // false: skipped, err or note says why
	note    string // why they did not run
	err     string // go test failed: its output
	results []goBench
}

// goBench is one line of go test -bench output.
type goBench struct {
	name      string
	nsPerOp   float64
	allocs    float64
	hasAllocs bool
	line      string
}

// runGoBenchmarks runs go test -bench . -benchmem ./bench when that package
// has benchmarks. It runs after the pgbench runs, so it competes with none.
func runGoBenchmarks(ctx context.Context, root string) goBenchResult {
	files, _ := filepath.Glob(filepath.Join(root, "bench", "*_test.go"))
	has := false
	for _, f := range files {
		if strings.Contains(readFile(f), "func Benchmark") {
			has = true
		}
	}
	if !has {
		return goBenchResult{note: "./bench has no Go benchmarks yet"}
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1", "-timeout", "10m", "./bench/")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return goBenchResult{err: err.Error() + "\n" + lastLines(out.String(), 30)}
	}
	return goBenchResult{ran: true, results: parseGoBench(out.String())}
}

// parseGoBench reads lines such as
//
//	BenchmarkRelaySmall-2   1234567   95.3 ns/op   0 B/op   0 allocs/op
func parseGoBench(out string) []goBench {
	var res []goBench
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		b := goBench{name: f[0], line: strings.TrimSpace(line)}
		for i := 2; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.nsPerOp = v
			case "allocs/op":
				b.allocs, b.hasAllocs = v, true
			}
		}
		res = append(res, b)
	}
	return res
}

// Which benchmarks the two Go-level targets of issue 7 are judged on, by name.
var (
	relayBench  = regexp.MustCompile(`(?i)relay|forward`)
	cachedBench = regexp.MustCompile(`(?i)cache.*hit|hit.*cache|cached`)
)

func (g *goBenchResult) matching(re *regexp.Regexp) []goBench {
	var out []goBench
	for _, b := range g.results {
		if re.MatchString(b.name) {
			out = append(out, b)
		}
	}
	return out
}
