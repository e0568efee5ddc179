// Package bench holds lockguard's performance measurements.
//
// It exists because a proxy that costs more than PgBouncer will not be put in
// front of a production database (issue 7): every CPU cycle lockguard spends
// per message is taken from PostgreSQL on the same machine. Two kinds of
// measurement live here:
//
//   - Go benchmarks (go test -bench . -benchmem ./bench) with allocation
//     counts: BenchmarkRelay (a small query, a prepared execution, a pipeline
//     of 10, a 64 KiB COPY chunk and 1,000 DataRows, through an in-process
//     lockguard over loopback TCP to a scripted upstream, guard off and on),
//     BenchmarkAnalysisCacheHit and …Miss, BenchmarkAdmission (the guard's
//     decision with no hazard, a hazard elsewhere and a conflicting one),
//     BenchmarkHazardConflict, and BenchmarkSession and
//     BenchmarkSessionConnect (a round trip and a connection through
//     lockguard next to the same straight to a real PostgreSQL; skipped with
//     -short). Tests assert 0 allocations per relayed round trip and per
//     cached analysis;
//   - bench/compare, a program that runs pgbench against PostgreSQL directly,
//     through lockguard and through PgBouncer side by side in one run and
//     writes bench/RESULTS.md.
//
// Only ratios measured in the same run are meaningful: absolute figures move
// with the load of the machine.
package bench
