package guard

import (
	"fmt"
	"strings"
)

// LockMode is a PostgreSQL table-level lock mode. The numeric values match
// Postgres's own LOCKMODE numbers (AccessShareLock = 1 … AccessExclusiveLock
// = 8), so a mode from LOCK TABLE's parse tree maps directly, and a larger
// value is a stronger lock.
type LockMode uint8

// The eight table-level lock modes, weakest first. NoLock means the statement
// takes no lock on the relation.
const (
	NoLock LockMode = iota
	AccessShare
	RowShare
	RowExclusive
	ShareUpdateExclusive
	Share
	ShareRowExclusive
	Exclusive
	AccessExclusive
)

var lockModeNames = [...]string{
	NoLock:               "NO LOCK",
	AccessShare:          "ACCESS SHARE",
	RowShare:             "ROW SHARE",
	RowExclusive:         "ROW EXCLUSIVE",
	ShareUpdateExclusive: "SHARE UPDATE EXCLUSIVE",
	Share:                "SHARE",
	ShareRowExclusive:    "SHARE ROW EXCLUSIVE",
	Exclusive:            "EXCLUSIVE",
	AccessExclusive:      "ACCESS EXCLUSIVE",
}

var lockModePgNames = [...]string{
	NoLock:               "NoLock",
	AccessShare:          "AccessShareLock",
	RowShare:             "RowShareLock",
	RowExclusive:         "RowExclusiveLock",
	ShareUpdateExclusive: "ShareUpdateExclusiveLock",
	Share:                "ShareLock",
	ShareRowExclusive:    "ShareRowExclusiveLock",
	Exclusive:            "ExclusiveLock",
	AccessExclusive:      "AccessExclusiveLock",
}

// String returns the SQL name of the mode, as written in LOCK TABLE … IN
// <mode> MODE: "ACCESS EXCLUSIVE".
func (m LockMode) String() string {
	if int(m) < len(lockModeNames) {
		return lockModeNames[m]
	}
	return fmt.Sprintf("LockMode(%d)", uint8(m))
}

// PgName returns the name pg_locks.mode uses: "AccessExclusiveLock".
func (m LockMode) PgName() string {
	if int(m) < len(lockModePgNames) {
		return lockModePgNames[m]
	}
	return m.String()
}

// conflictMask[m] has bit n set when mode m conflicts with mode n. This is the
// table in the PostgreSQL documentation, "Conflicting Lock Modes"
// (lock.c's LockConflicts).
var conflictMask = [...]uint16{
	NoLock:               0,
	AccessShare:          1 << AccessExclusive,
	RowShare:             1<<Exclusive | 1<<AccessExclusive,
	RowExclusive:         1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	ShareUpdateExclusive: 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	Share:                1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	ShareRowExclusive:    1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	Exclusive:            1<<RowShare | 1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	AccessExclusive:      1<<AccessShare | 1<<RowShare | 1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
}

// Conflicts reports whether m and other conflict: two transactions cannot
// hold them on the same relation at the same time. The relation is symmetric;
// NoLock conflicts with nothing.
func (m LockMode) Conflicts(other LockMode) bool {
	if int(m) >= len(conflictMask) || int(other) >= len(conflictMask) {
		return false
	}
	return conflictMask[m]&(1<<other) != 0
}

// WouldWait reports whether a request for mode requested has to wait while
// another session holds — or is already waiting for — mode held on the same
// relation. Postgres checks a new request against the modes other sessions
// wait for before the granted ones, so a pending ACCESS EXCLUSIVE makes even
// a plain SELECT wait: WouldWait(AccessShare, AccessExclusive) is true.
func WouldWait(requested, held LockMode) bool { return requested.Conflicts(held) }

// Blocks describes, for a person reading explain output, what holding m does
// to other sessions' work on the relation: "blocks reads and writes".
func (m LockMode) Blocks() string {
	switch m {
	case AccessShare:
		return "blocks only ACCESS EXCLUSIVE locks"
	case RowShare:
		return "blocks EXCLUSIVE and ACCESS EXCLUSIVE locks"
	case RowExclusive:
		return "blocks SHARE and stronger locks (index builds, most DDL)"
	case ShareUpdateExclusive:
		return "blocks DDL, VACUUM, ANALYZE and index builds, not reads or writes"
	case Share:
		return "blocks writes"
	case ShareRowExclusive:
		return "blocks writes and other SHARE ROW EXCLUSIVE locks"
	case Exclusive:
		return "blocks writes and SELECT … FOR UPDATE/SHARE"
	case AccessExclusive:
		return "blocks reads and writes"
	}
	return "blocks nothing"
}

// ParseLockMode accepts a pg_locks name ("AccessExclusiveLock"), a SQL name
// ("ACCESS EXCLUSIVE", any case, optionally followed by "MODE") or the short
// forms "AEL", "SUE", "SRE" and so on.
func ParseLockMode(s string) (LockMode, error) {
	t := strings.TrimSpace(s)
	for m := NoLock; m <= AccessExclusive; m++ {
		if t == lockModePgNames[m] {
			return m, nil
		}
	}
	u := strings.ToUpper(strings.Join(strings.Fields(t), " "))
	u = strings.TrimSuffix(u, " MODE")
	for m := NoLock; m <= AccessExclusive; m++ {
		if u == lockModeNames[m] || u == strings.ToUpper(lockModePgNames[m]) {
			return m, nil
		}
	}
	switch u {
	case "AS":
		return AccessShare, nil
	case "RS":
		return RowShare, nil
	case "RE":
		return RowExclusive, nil
	case "SUE":
		return ShareUpdateExclusive, nil
	case "S":
		return Share, nil
	case "SRE":
		return ShareRowExclusive, nil
	case "E":
		return Exclusive, nil
	case "AEL", "AE":
		return AccessExclusive, nil
	}
	return NoLock, fmt.Errorf("unknown lock mode %q", s)
}
