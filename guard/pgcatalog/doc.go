// Package pgcatalog implements guard.Catalog by asking a live PostgreSQL
// server over a pgx connection.
//
// guard decides from SQL text alone as far as the text goes; the facts it
// cannot read there — that orders_user_fk is a foreign key to users, that
// events has three partitions, which table users_email_idx belongs to, what a
// view reads — live in pg_constraint, pg_inherits, pg_index, pg_rewrite and
// pg_proc. This package is the one place in guard's tree that talks to a
// server, so that guard itself stays pure logic.
//
// Every query reads system catalogs only and resolves names with to_regclass,
// which takes no lock: looking a table up never queues behind the DDL the
// proxy is guarding against. Unqualified names are resolved by the
// connection's search_path.
package pgcatalog
