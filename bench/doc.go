// Package bench holds lockguard's performance measurements.
//
// It exists because a proxy that costs more than PgBouncer will not be put in
// front of a production database (issue 7): every CPU cycle lockguard spends
// per message is taken from PostgreSQL on the same machine. Two kinds of
// measurement live here:
//
//   - Go benchmarks (go test -bench . -benchmem ./bench) of the relay, the
//     guard's analysis cache and the admission check, with allocation counts;
//   - bench/compare, a program that runs pgbench against PostgreSQL directly,
//     through lockguard and through PgBouncer side by side in one run and
//     writes bench/RESULTS.md.
//
// Only ratios measured in the same run are meaningful: absolute figures move
// with the load of the machine.
package bench
