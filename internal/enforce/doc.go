// Package enforce carries out guard's decisions on the wire: it implements
// proxy.Hooks with guard's analysis and policy, injects lock timeouts around
// lock-taking DDL, retries a DDL that gave up its place in the lock queue,
// warns and blocks by policy, and follows each session's settings and
// transaction so that what it injects is undone exactly.
//
// It is the only package that knows both guard (SQL) and proxy (the wire):
// guard stays free of sockets, proxy free of SQL.
package enforce
