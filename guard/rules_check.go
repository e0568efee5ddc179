package guard

import "strings"

// check runs the rules that apply to the current statement.
func (e *evaluator) check() {
	st, f := e.st, e.f
	switch st.Class {
	case ClassDDL:
		e.checkOperations()
		if f != nil {
			switch f.kind {
			case factAlterTable:
				e.checkAlterTable()
			case factCreateTable:
				e.checkCreateTable()
			case factCreateIndex:
				e.checkCreateIndex()
			case factDropIndex:
				e.checkDropIndex()
			case factDrop:
				e.checkDrop()
			case factRename, factSetSchema:
				e.checkRename()
			case factAlterEnum:
				e.checkEnum()
			case factCreateDomain, factAlterDomain:
				e.checkDomain()
			case factDropDatabase:
				e.checkDropDatabase()
			}
		}
		switch st.Tag {
		case "TRUNCATE TABLE":
			e.checkTruncate()
		case "CREATE TRIGGER", "CREATE CONSTRAINT TRIGGER":
			if rel := e.target(); !e.isNew(rel) {
				e.fireTrigger(rel, st.Tag)
			}
		}
	case ClassMaintenance:
		e.checkMaintenance()
	case ClassTransaction:
		if st.TxKind == TxBegin && e.explicit {
			e.fire(rTxnNesting, hit{
				msg:    st.Tag + " inside a transaction block that is already open",
				detail: "PostgreSQL ignores the inner BEGIN with a warning; the first COMMIT ends the whole block, and the locks taken so far are held until then",
				hint:   "remove the inner BEGIN (migration tools usually wrap each migration in a transaction already)",
			})
		}
	}
	e.checkConcurrentlyInTxn()
	e.checkTxLocks()
	e.checkTimeouts()
	e.checkCIC14()
	e.checkBriefAccessExclusive()
}

// checkOperations applies the freeze switch and the DDL windows.
func (e *evaluator) checkOperations() {
	if e.c.Offline || e.f != nil && e.f.temp {
		return
	}
	rel := e.target()
	if e.isTemp(rel) {
		return
	}
	if e.p.freeze {
		e.fire(rDDLFreeze, hit{
			rel: rel, lock: e.st.Strongest(),
			msg:    e.st.Tag + " refused: a DDL freeze is in force",
			detail: "the policy's freeze switch is on: no schema changes until it is lifted",
			hint:   "wait until the freeze is lifted (policy.freeze: false, then reload lockguard)",
		})
	}
	if len(e.p.windows) > 0 {
		now := e.now()
		for _, w := range e.p.windows {
			if w.contains(now) {
				return
			}
		}
		e.fire(rDDLOutsideWindow, hit{
			rel: rel, lock: e.st.Strongest(),
			msg:    e.st.Tag + " refused: outside the allowed DDL windows",
			detail: "DDL may run only during: " + strings.Join(e.p.windowText, "; ") + " (now " + now.UTC().Format("Mon 15:04 MST") + ")",
			hint:   "run it inside an allowed window",
		})
	}
}

// checkConcurrentlyInTxn: CONCURRENTLY forms cannot run in a transaction
// block, and a multi-statement query string is one.
func (e *evaluator) checkConcurrentlyInTxn() {
	st := e.st
	if !st.Concurrently || !st.NoTxBlock || !(e.inTx || e.multi) {
		return
	}
	where := "inside a transaction block"
	if !e.explicit {
		where = "in a multi-statement query string (an implicit transaction block)"
	}
	e.fire(rConcurrentlyInTxn, hit{
		rel: e.target(), lock: st.Strongest(),
		msg:    st.Tag + " CONCURRENTLY " + where + ": PostgreSQL refuses it",
		detail: "CONCURRENTLY runs in several transactions of its own, so it fails with SQLSTATE 25001 (cannot run inside a transaction block) and the migration stops",
		hint:   "run it alone, outside BEGIN/COMMIT (turn off the migration tool's transaction for this migration)",
	})
}

// checkCIC14: CONCURRENTLY index builds on 14.0–14.3.
func (e *evaluator) checkCIC14() {
	st := e.st
	if !st.Concurrently || st.Tag != "CREATE INDEX" && st.Tag != "REINDEX" {
		return
	}
	v := e.version()
	if v < 140000 || v >= 140004 {
		return
	}
	e.fire(rCICPG14Corruption, hit{
		rel: e.target(), lock: st.Strongest(),
		msg:    st.Tag + " CONCURRENTLY on PostgreSQL 14.0–14.3 can build a corrupt index",
		detail: "a bug fixed in 14.4 lets concurrent index builds miss rows written while they run, without an error",
		hint:   "upgrade to PostgreSQL 14.4 or later first; then REINDEX indexes built concurrently on 14.0–14.3",
	})
}

// checkBriefAccessExclusive records DDL that takes ACCESS EXCLUSIVE on an
// existing table when no other lock or compatibility rule said anything.
func (e *evaluator) checkBriefAccessExclusive() {
	st := e.st
	if st.Class != ClassDDL || e.firedHere("lock", "compat", "operations") {
		return
	}
	for _, l := range st.Locks {
		if l.Mode != AccessExclusive || l.Conditional || e.isNew(l.Rel) || e.isTemp(l.Rel) {
			continue
		}
		e.fire(rAccessExclusiveLock, hit{
			rel: l.Rel, lock: l.Mode,
			msg:    st.Tag + " takes ACCESS EXCLUSIVE on " + l.Rel.String(),
			detail: lockDetail(AccessExclusive, one(l.Rel), " (briefly)") + "; while it waits for the lock, every later query on the table waits behind it",
			hint:   "keep it alone in its transaction with a short lock_timeout and retries (lockguard injects both at runtime)",
		})
		return
	}
}
