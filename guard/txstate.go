package guard

import (
	"slices"
	"strings"
)

// Record adds what st did to the transaction state. Call it after each
// statement that succeeded inside a transaction block, with the Statement
// that Policy.Evaluate judged: the names of the tables a CREATE TABLE
// creates come from the facts Evaluate derived for it (the Analysis does not
// carry them yet), so a statement Evaluate never saw does not make its table
// count as new — the safe direction: rules then treat it as an existing
// table.
func (t *TxState) Record(st *Statement) { t.record(st, nil) }

func (t *TxState) record(st *Statement, f *stmtFacts) {
	if st == nil {
		return
	}
	t.Statements++
	var creates []RelName
	switch {
	case f != nil:
		creates = f.creates
	case st.Class == ClassDDL:
		creates = createdBy(st)
	}
	for _, r := range creates {
		if !t.isCreated(r) {
			t.Created = append(t.Created, r)
		}
	}
	for _, l := range st.Locks {
		if l.Conditional || l.Mode < ShareRowExclusive || t.isCreated(l.Rel) {
			continue
		}
		merged := false
		for i := range t.StrongLocks {
			if t.StrongLocks[i].Rel.Matches(l.Rel) {
				if l.Mode > t.StrongLocks[i].Mode {
					t.StrongLocks[i].Mode = l.Mode
				}
				merged = true
				break
			}
		}
		if !merged {
			t.StrongLocks = append(t.StrongLocks, l)
		}
		if l.Mode == AccessExclusive && !t.AccessExclusive {
			t.AccessExclusive, t.AccessExclusiveOn = true, l.Rel
		}
	}
	for _, s := range st.Subcommands {
		if strings.HasSuffix(s, " NOT VALID") && len(st.Locks) > 0 && st.Locks[0].Role == RoleTarget {
			rel := st.Locks[0].Rel
			if !slices.ContainsFunc(t.NotValid, rel.Matches) {
				t.NotValid = append(t.NotValid, rel)
			}
		}
	}
}

// Savepoint, Release and RollbackTo follow the transaction's savepoints.
// PostgreSQL releases the locks taken after a savepoint when the transaction
// rolls back to it, and undoes what was created: the state returns to what
// it was at the savepoint. An unknown name changes nothing (PostgreSQL
// refuses it).
func (t *TxState) Savepoint(name string) { t.saves.set(name, t.Clone()) }

// Release forgets savepoint name and those set after it; what was done
// since stays.
func (t *TxState) Release(name string) { t.saves.release(name) }

// RollbackTo returns the state to savepoint name, which stays; those set
// after it are forgotten.
func (t *TxState) RollbackTo(name string) {
	if state, ok := t.saves.rollbackTo(name); ok {
		saves := t.saves
		*t = state.Clone()
		t.saves = saves
	}
}

// Reset empties the state for the next transaction, keeping its storage.
func (t *TxState) Reset() {
	t.Created = t.Created[:0]
	t.StrongLocks = t.StrongLocks[:0]
	t.NotValid = t.NotValid[:0]
	t.AccessExclusive = false
	t.AccessExclusiveOn = RelName{}
	t.Statements = 0
	t.saves.reset()
}

func (t *TxState) isCreated(rel RelName) bool {
	return slices.ContainsFunc(t.Created, rel.Matches)
}

// Clone returns a copy of t that shares no storage with it: the evaluator
// appends to its copy, and Record and Reset reuse t's slices, so a copy read
// outside the lock that guards t must be a clone taken under it.
func (t *TxState) Clone() TxState {
	c := *t
	c.Created = slices.Clone(t.Created)
	c.StrongLocks = slices.Clone(t.StrongLocks)
	c.NotValid = slices.Clone(t.NotValid)
	c.saves = nil // the evaluator's copy needs no savepoints
	return c
}

// strongOn returns the strong lock the transaction holds on rel.
func (t *TxState) strongOn(rel RelName) (RelationLock, bool) {
	for _, l := range t.StrongLocks {
		if l.Rel.Matches(rel) {
			return l, true
		}
	}
	return RelationLock{}, false
}
