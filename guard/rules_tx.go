package guard

import "strings"

// The rules about how statements are grouped into transactions and
// migration files.

// checkTxLocks: several strong locks in one transaction, and work done
// while holding ACCESS EXCLUSIVE.
func (e *evaluator) checkTxLocks() {
	st := e.st
	if !e.inTx || st.Class == ClassTransaction || st.Class == ClassSession {
		return
	}
	var fresh []RelationLock
	for _, l := range st.Locks {
		if l.Mode < ShareRowExclusive || l.Conditional || e.isNew(l.Rel) || e.isTemp(l.Rel) {
			continue
		}
		if _, held := e.tx.strongOn(l.Rel); !held {
			fresh = append(fresh, l)
		}
	}
	var held []RelName
	var heldMode LockMode
	for _, l := range e.tx.StrongLocks {
		if !e.isNew(l.Rel) {
			held = append(held, l.Rel)
			heldMode = max(heldMode, l.Mode)
		}
	}
	if len(fresh) > 0 && len(held) > 0 {
		l := fresh[0]
		e.fire(rMultiLockTxn, hit{
			rel: l.Rel, lock: l.Mode,
			msg:    st.Tag + " takes " + l.Mode.String() + " on " + l.Rel.String() + " while the transaction already holds " + heldMode.String() + " on " + relsText(held),
			detail: "each lock is waited for separately and all are held until commit: " + relsText(append(held, l.Rel)) + " stay locked for the whole transaction, and two transactions that take these locks in different orders deadlock",
			hint:   "commit after each table's change; or take every lock up front in one fixed order: LOCK TABLE " + relsTextComma(append(held, l.Rel)) + " IN " + max(heldMode, l.Mode).String() + " MODE;",
		})
	}
	if !e.tx.AccessExclusive {
		return
	}
	work := st.Class == ClassRead || st.Class == ClassWrite || st.Tag == "DO" || st.Tag == "CALL" || st.Scan || st.Rewrite
	if !work || bookkeeping(st) {
		return
	}
	on := e.tx.AccessExclusiveOn
	e.fire(rWorkAfterAccessExclusive, hit{
		rel: on, lock: AccessExclusive,
		msg:    st.Tag + " runs while the transaction holds ACCESS EXCLUSIVE on " + on.String(),
		detail: "the lock is held through this statement too: " + on.String() + " stays unreadable and unwritable until commit",
		hint:   "COMMIT right after the DDL; run backfills and other work in their own transactions (backfills in batches)",
	})
}

// bookkeeping reports a read or write of system catalogs and migration
// tools' history tables alone: the introspection and the history row every
// tool's migration runs after its DDL, inside its transaction (Django,
// Rails, Alembic, knex, goose, Flyway, …). They are brief, and the tool
// gives no way to commit before them.
func bookkeeping(st *Statement) bool {
	if len(st.Locks) == 0 || st.Tag == "DO" || st.Tag == "CALL" || st.Scan || st.Rewrite {
		return false
	}
	for _, l := range st.Locks {
		if !catalogRel(l.Rel) && !migrationHistory[l.Rel.Name] {
			return false
		}
	}
	return true
}

// catalogRel reports a system catalog or information_schema view; an
// unqualified pg_* name too (analysed without a catalog, PostgreSQL finds
// pg_catalog's first).
func catalogRel(rel RelName) bool {
	switch rel.Schema {
	case "pg_catalog", "information_schema":
		return true
	case "":
		return strings.HasPrefix(rel.Name, "pg_")
	}
	return false
}

// migrationHistory names the tables in which migration tools record what
// they ran, and their lock tables.
var migrationHistory = map[string]bool{
	"schema_migrations":          true, // Rails, golang-migrate, dbmate, Ecto
	"ar_internal_metadata":       true, // Rails
	"django_migrations":          true,
	"alembic_version":            true,
	"knex_migrations":            true,
	"knex_migrations_lock":       true,
	"pgmigrations":               true, // node-pg-migrate
	"goose_db_version":           true,
	"flyway_schema_history":      true,
	"schema_version":             true, // Flyway before 5
	"databasechangelog":          true, // Liquibase
	"databasechangeloglock":      true,
	"__EFMigrationsHistory":      true, // Entity Framework
	"SequelizeMeta":              true,
	"_prisma_migrations":         true,
	"_sqlx_migrations":           true,
	"__diesel_schema_migrations": true,
	"migrations":                 true, // Laravel, TypeORM, MikroORM
}

func relsTextComma(rels []RelName) string {
	s := ""
	for i, r := range rels {
		if i > 0 {
			s += ", "
		}
		s += r.String()
	}
	return s
}

// checkTimeouts (offline): the first lock-taking statement of a file with
// no lock_timeout / statement_timeout set before it.
func (e *evaluator) checkTimeouts() {
	if !e.c.Offline || e.st.Concurrently {
		return
	}
	st := e.st
	var strong *RelationLock
	for i := range st.Locks {
		l := &st.Locks[i]
		if l.Mode >= Share && !l.Conditional && !e.isNew(l.Rel) && !e.isTemp(l.Rel) {
			strong = l
			break
		}
	}
	if strong == nil {
		return
	}
	if !e.firedLT && !e.lockTimeout.set() {
		e.firedLT = true
		e.fire(rMissingLockTimeout, hit{
			rel: strong.Rel, lock: strong.Mode,
			msg:    st.Tag + " takes " + strong.Mode.String() + " on " + strong.Rel.String() + " with no lock_timeout set earlier in the file",
			detail: "while it waits for the lock behind a long transaction, every later query on " + strong.Rel.String() + " that conflicts with " + strong.Mode.String() + " waits behind it, for as long as that transaction lasts",
			hint:   "SET lock_timeout = '2s';  -- at the top of the migration (SET LOCAL inside its transaction), and retry on SQLSTATE 55P03; lockguard does both at runtime",
		})
	}
	if (st.Class == ClassDDL || st.Class == ClassMaintenance) && !e.firedST && !e.stmtTimeout.set() {
		e.firedST = true
		e.fire(rMissingStatementTimeout, hit{
			rel: strong.Rel, lock: strong.Mode,
			msg:    st.Tag + " takes " + strong.Mode.String() + " on " + strong.Rel.String() + " with no statement_timeout set earlier in the file",
			detail: "a runaway statement holds its locks without bound",
			hint:   "SET statement_timeout = '5min';  -- 0 for CREATE INDEX CONCURRENTLY and VALIDATE CONSTRAINT, which hold only weak locks",
		})
	}
}
