// Command lockguard is a PostgreSQL wire-protocol proxy that keeps schema
// changes from taking the database down. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

const usage = `lockguard — a PostgreSQL proxy that keeps schema changes from taking the database down

Usage:
  lockguard serve [flags]          relay clients to PostgreSQL (lockguard serve -h lists the flags)
  lockguard explain [flags] SQL…   show which tables each statement locks, in which mode
  lockguard check [flags] FILE…    run the DDL policy over migration files (lockguard check -h)
  lockguard demo [flags]           run the FK-migration incident straight to PostgreSQL and through lockguard, and compare (lockguard demo -h)
  lockguard version                print the version

`

var version = "dev"

func main() {
	stopProfile := startCPUProfile(os.Getenv("LOCKGUARD_CPUPROFILE"), os.Stderr)
	code := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProfile()
	os.Exit(code)
}

// startCPUProfile writes a CPU profile (go tool pprof) to path until the
// returned function runs, when path is not empty: LOCKGUARD_CPUPROFILE=FILE
// profiles a whole serve run, ended by SIGTERM or Ctrl-C. It is for measuring
// lockguard under load; it costs nothing when unset.
func startCPUProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "lockguard: LOCKGUARD_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "lockguard: LOCKGUARD_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "lockguard: LOCKGUARD_CPUPROFILE: %v\n", err)
		}
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		stop() // serve handles its own signals
		return cmdServe(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(ctx, args[1:], stdin, stdout, stderr)
	case "check":
		return cmdCheck(ctx, args[1:], stdin, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "lockguard", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "lockguard: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
