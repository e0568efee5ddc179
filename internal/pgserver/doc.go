// Package pgserver starts a throwaway, real PostgreSQL server for lockguard's
// end-to-end tests, its benchmarks, and the `lockguard run` and `lockguard demo`
// commands.
//
// A proxy that speaks the PostgreSQL wire protocol can only be trusted once it
// has relayed real traffic from a real server: authentication exchanges, TLS,
// crash recovery and server-side errors are not things a scripted fake gets
// right. Start creates a fresh cluster with initdb in a temporary directory,
// tunes it for speed rather than durability (fsync=off), listens on loopback
// only, and removes everything again on Stop.
//
// Every server has the same fixed set of roles, so tests can exercise each
// authentication method the proxy must relay. pg_hba.conf applies to TCP
// connections on 127.0.0.1 and ::1 (as "host", and also "hostssl" when TLS is
// on):
//
//	role          password           method
//	postgres      (none)             trust (superuser)
//	lg_scram      scram-pw-1         scram-sha-256
//	lg_md5        md5-pw-1           md5 (stored as an MD5 hash)
//	lg_plain      plain-pw-1         password (cleartext on the wire)
//	anyone else   -                  trust
//
// Unix-socket connections are trusted for everyone. The three password roles
// can log in, create databases, and create tables in the public schema of the
// database TestDB.
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// server and its tools run as the OS user "postgres" (or "nobody" if that does
// not exist), and the temporary directory is chowned to that user.
//
// If the process that called Start dies without calling Stop (a panicking test,
// a test timeout), a small reaper process shuts the server down immediately and
// removes its directory, so no stray servers outlive a test run.
package pgserver
