package guard

import "time"

// Action is what the policy does about a finding.
type Action uint8

const (
	// ActionAllow lets the statement run; the finding is only recorded.
	ActionAllow Action = iota
	// ActionWarn lets it run and sends the client a NoticeResponse.
	ActionWarn
	// ActionBlock refuses it with an ErrorResponse (SQLSTATE CodePolicyBlock).
	ActionBlock
)

var actionNames = [...]string{ActionAllow: "allow", ActionWarn: "warn", ActionBlock: "block"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// ParseAction reads "allow", "warn" or "block".
func ParseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), true
		}
	}
	return 0, false
}

// SQLSTATEs lockguard answers with. Shed and lock-timeout refusals use
// PostgreSQL's own 55P03 (lock_not_available), so that drivers' and ORMs'
// retry logic treats them as transient; a policy block uses a code of
// lockguard's own class "LG", which PostgreSQL never sends.
const (
	CodeLockNotAvailable = "55P03"
	CodePolicyBlock      = "LG001"
	CodeWarning          = "01000"
)

// Finding is one rule that fired for one statement.
type Finding struct {
	Rule      string // stable kebab-case rule id, e.g. "drop-foreign-key"
	Action    Action // after scopes and overrides
	Statement int    // index into Analysis.Statements
	Relation  RelName
	Lock      LockMode
	Message   string // "rule-id: what was detected", one line, without a "lockguard:" prefix
	Detail    string // the lock taken and what it blocks
	Hint      string // the safe alternative
	// Overridden is set when an inline `lockguard:allow` comment lowered
	// the action; Reason is the reason it gave.
	Overridden bool
	Reason     string
	// Note says what lockguard could not know when it judged the statement
	// (for example "no catalog: whether orders_user_fk is a foreign key was
	// guessed from its name"); empty when it knew everything it needed.
	Note string
}

// Context is what a policy needs to know besides the statement itself.
type Context struct {
	User, Database, Application string
	// InTransaction is set when the statement runs inside an explicit
	// transaction block.
	InTransaction bool
	// Tx describes what earlier statements of the current transaction did;
	// nil outside a transaction block.
	Tx *TxState
	// RawSQL is the text as the client sent it, comments included (inline
	// overrides live in comments).
	RawSQL string
	// ServerVersion is server_version_num (150004); 0 when unknown.
	ServerVersion int
	// Catalog supplies table sizes and function volatility; nil when
	// lockguard has no side connection (offline `lockguard check`).
	Catalog Catalog
	// Now is the time the freeze windows are judged at; the zero value means
	// time.Now().
	Now time.Time
	// Offline is set by `lockguard check`: the Analysis is a migration file
	// whose statements run one at a time (autocommit unless the file says
	// BEGIN), not one query string, and the rules marked OfflineOnly (the
	// ones the proxy makes moot at runtime, such as missing-lock-timeout)
	// run while the RuntimeOnly ones (ddl-freeze, ddl-outside-window) do not.
	// RawSQL is then the whole file, and an inline override applies to the
	// statement it is written in or just above.
	Offline bool
	// Sizes supplies table sizes for the min-rows / min-bytes scopes when
	// Catalog does not (offline: `lockguard check --large-table`); nil
	// when there are none.
	Sizes SizeCatalog
	// History carries, offline, what the earlier files of one `lockguard
	// check` run defined (column types, constraints, indexes), so that a
	// migration is judged against the schema its folder builds up.
	// Evaluate reads it and adds the file's own definitions; tables created
	// in earlier files do not count as new. nil: each file stands alone.
	// Not safe for concurrent use.
	History *History
}

// TxState is what the statements run so far in one transaction did, for the
// rules that depend on the sequence (validate-same-txn, multi-lock-txn,
// work-after-access-exclusive) and for the exemption of tables created in the
// same transaction. The runtime calls Record after every statement that
// succeeded inside a transaction block and Reset when the block ends.
type TxState struct {
	Created         []RelName      // tables created in this transaction
	StrongLocks     []RelationLock // locks ≥ SHARE ROW EXCLUSIVE taken so far on tables not created in it (strongest per table)
	NotValid        []RelName      // tables that got a NOT VALID constraint
	AccessExclusive bool           // an ACCESS EXCLUSIVE lock is held on a table not created in this transaction
	// AccessExclusiveOn is the first such table.
	AccessExclusiveOn RelName
	Statements        int // statements run so far

	saves savepoints[TxState]
}
