// lockguard explain: show which tables each statement locks, in which mode,
// and what that blocks.
//
//	lockguard explain [--json] [--dsn URL] [--timeout 10s] SQL…
//
// Each argument is one query string (it may hold several statements); with
// no argument, or "-", the query string is read from standard input. Without
// --dsn the analysis uses the text alone and lists under "unknown" what only
// the live catalog could tell (which constraint is a foreign key, a table's
// partitions, the table of an index). With --dsn it connects to PostgreSQL
// and asks the catalog, resolving unqualified names by that connection's
// search_path.
//
// Exit status: 0 analysed; 1 a statement did not parse or the connection
// failed; 2 usage error.
//
// # JSON output (--json)
//
// One object; fields are never renamed or removed, new fields may be added:
//
//	{
//	  "catalog": true,                     // facts came from a live catalog (--dsn)
//	  "server_version": 150004,            // server_version_num, 0 without --dsn
//	  "error": "syntax error at …",        // first parse error, omitted when none
//	  "statements": [{
//	    "sql": "ALTER TABLE orders DROP CONSTRAINT orders_user_fk",
//	    "input": 0,                        // index of the query string (argument) it came from
//	    "start": 0, "end": 49,             // byte offsets within that string, comments trimmed
//	    "tag": "ALTER TABLE",              // command tag
//	    "class": "ddl",                    // read|write|ddl|maintenance|transaction|session|other
//	    "subcommands": ["DROP CONSTRAINT FOREIGN KEY"],
//	    "locks": [{
//	      "relation": "public.orders",     // as Postgres would print it
//	      "schema": "public",              // "" when unqualified and not resolved
//	      "name": "orders",
//	      "mode": "ACCESS EXCLUSIVE",      // SQL name
//	      "pg_mode": "AccessExclusiveLock",// pg_locks.mode
//	      "role": "target",                // target|referenced|partition_parent|partition|
//	                                       // index_table|cascaded|read|index
//	      "index": "",                     // the index the table was reached through
//	      "conditional": false,            // taken only if execution reaches it
//	      "blocks": "blocks reads and writes"
//	    }],
//	    "strongest": "ACCESS EXCLUSIVE",   // "NO LOCK" when it locks nothing
//	    "rewrite": false,                  // rewrites the table under the lock
//	    "scan": false,                     // scans the table under the lock
//	    "concurrently": false,
//	    "no_tx_block": false,              // cannot run inside a transaction block
//	    "tx_kind": "",                     // begin|commit|rollback|savepoint|release|
//	                                       // rollback to|prepare|commit prepared|rollback prepared
//	    "settings": [{"name": "lock_timeout", "value": "2s", "local": true, "reset": false}],
//	    "unknown": ["…"],                  // facts that needed the catalog and were missing
//	    "notes": ["…"]
//	  }]
//	}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
)

const explainUsage = `Usage: lockguard explain [--json] [--dsn URL] SQL…

Shows, for each statement, the tables it locks, in which mode, what each lock
blocks, whether it rewrites or scans the table and whether it may run inside a
transaction block. SQL is read from standard input when no argument (or "-")
is given. With --dsn the live catalog supplies facts the text does not carry
(which constraint is a foreign key, partitions, the table of an index).

Flags:
`

func cmdExplain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (format documented in cmd/lockguard/explain.go)")
	dsn := fs.String("dsn", "", "PostgreSQL connection URL whose catalog supplies schema facts")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout for connecting and for each catalog query")
	fs.Usage = func() {
		fmt.Fprint(stderr, explainUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	inputs := fs.Args()
	if len(inputs) == 0 || len(inputs) == 1 && inputs[0] == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "lockguard explain: reading standard input: %v\n", err)
			return 1
		}
		inputs = []string{string(data)}
	}

	var cat guard.Catalog
	version := 0
	if *dsn != "" {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		conn, err := pgx.Connect(cctx, *dsn)
		if err != nil {
			cancel()
			fmt.Fprintf(stderr, "lockguard explain: connecting: %v\n", err)
			return 1
		}
		defer conn.Close(context.Background())
		c, err := pgcatalog.New(cctx, conn)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "lockguard explain: reading the catalog: %v\n", err)
			return 1
		}
		c.Timeout = *timeout
		cat = c
		version = c.ServerVersion()
	}
	az := guard.NewAnalyzer(cat, 0)

	out := explainJSON{Catalog: cat != nil, ServerVersion: version, Statements: []explainStmt{}}
	var analyses []*guard.Analysis
	code := 0
	for i, in := range inputs {
		a := az.Analyze(in)
		analyses = append(analyses, a)
		if a.Err != nil {
			code = 1
			if out.Error == "" {
				out.Error = a.Err.Error()
			}
		}
		for j := range a.Statements {
			out.Statements = append(out.Statements, jsonStatement(i, a, &a.Statements[j]))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "lockguard explain: %v\n", err)
			return 1
		}
		return code
	}
	n := 0
	for i, a := range analyses {
		if a.Err != nil {
			if len(analyses) > 1 {
				fmt.Fprintf(stderr, "lockguard explain: input %d: %v\n", i+1, a.Err)
			} else {
				fmt.Fprintf(stderr, "lockguard explain: %v\n", a.Err)
			}
			continue
		}
		for j := range a.Statements {
			n++
			if n > 1 {
				fmt.Fprintln(stdout)
			}
			writeText(stdout, n, a, &a.Statements[j], cat != nil)
		}
	}
	return code
}

type explainJSON struct {
	Catalog       bool          `json:"catalog"`
	ServerVersion int           `json:"server_version"`
	Error         string        `json:"error,omitempty"`
	Statements    []explainStmt `json:"statements"`
}

type explainStmt struct {
	SQL          string        `json:"sql"`
	Input        int           `json:"input"`
	Start        int           `json:"start"`
	End          int           `json:"end"`
	Tag          string        `json:"tag"`
	Class        string        `json:"class"`
	Subcommands  []string      `json:"subcommands"`
	Locks        []explainLock `json:"locks"`
	Strongest    string        `json:"strongest"`
	Rewrite      bool          `json:"rewrite"`
	Scan         bool          `json:"scan"`
	Concurrently bool          `json:"concurrently"`
	NoTxBlock    bool          `json:"no_tx_block"`
	TxKind       string        `json:"tx_kind"`
	Settings     []explainSet  `json:"settings"`
	Unknown      []string      `json:"unknown"`
	Notes        []string      `json:"notes"`
}

type explainLock struct {
	Relation    string `json:"relation"`
	Schema      string `json:"schema"`
	Name        string `json:"name"`
	Mode        string `json:"mode"`
	PgMode      string `json:"pg_mode"`
	Role        string `json:"role"`
	Index       string `json:"index"`
	Conditional bool   `json:"conditional"`
	Blocks      string `json:"blocks"`
}

type explainSet struct {
	Name       string `json:"name"`  // "$1" when a bind parameter gives it
	Value      string `json:"value"` // "$2" likewise
	Local      bool   `json:"local"`
	LocalParam int    `json:"local_param,omitempty"` // is_local is bind parameter $n
	Reset      bool   `json:"reset"`
}

// paramOr returns s, or "$n" when bind parameter n gives it.
func paramOr(s string, n int) string {
	if n > 0 {
		return "$" + strconv.Itoa(n)
	}
	return s
}

// jsonRoles are the stable JSON names of guard.Role values.
var jsonRoles = map[guard.Role]string{
	guard.RoleTarget:          "target",
	guard.RoleReferenced:      "referenced",
	guard.RolePartitionParent: "partition_parent",
	guard.RolePartition:       "partition",
	guard.RoleIndexTable:      "index_table",
	guard.RoleCascaded:        "cascaded",
	guard.RoleRead:            "read",
	guard.RoleIndex:           "index",
}

func jsonStatement(input int, a *guard.Analysis, s *guard.Statement) explainStmt {
	e := explainStmt{
		SQL: a.Text(s), Input: input, Start: s.Start, End: s.End,
		Tag: s.Tag, Class: s.Class.String(),
		Subcommands: nonNil(s.Subcommands), Locks: []explainLock{},
		Strongest: s.Strongest().String(),
		Rewrite:   s.Rewrite, Scan: s.Scan, Concurrently: s.Concurrently, NoTxBlock: s.NoTxBlock,
		TxKind:   s.TxKind.String(),
		Settings: []explainSet{}, Unknown: nonNil(s.Unknown), Notes: nonNil(s.Notes),
	}
	for _, l := range s.Locks {
		e.Locks = append(e.Locks, explainLock{
			Relation: l.Rel.String(), Schema: l.Rel.Schema, Name: l.Rel.Name,
			Mode: l.Mode.String(), PgMode: l.Mode.PgName(), Role: jsonRoles[l.Role],
			Index: l.Index, Conditional: l.Conditional, Blocks: l.Mode.Blocks(),
		})
	}
	for _, c := range s.Settings {
		name, value := paramOr(c.Name, c.NameParam), paramOr(c.Value, c.Param)
		e.Settings = append(e.Settings, explainSet{Name: name, Value: value, Local: c.Local, LocalParam: c.LocalParam, Reset: c.Reset})
	}
	return e
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeText prints one statement for a person:
//
//  1. ALTER TABLE orders DROP CONSTRAINT orders_user_fk
//     ALTER TABLE (ddl): DROP CONSTRAINT FOREIGN KEY
//     ACCESS EXCLUSIVE  public.orders  target      blocks reads and writes of public.orders until commit
//     ACCESS EXCLUSIVE  public.users   referenced  blocks reads and writes of public.users until commit
//     rewrites table: no   scans table: no   transaction block: allowed
func writeText(w io.Writer, n int, a *guard.Analysis, s *guard.Statement, catalog bool) {
	fmt.Fprintf(w, "%d. %s\n", n, oneLine(a.Text(s), 160))
	head := fmt.Sprintf("%s (%s)", s.Tag, s.Class)
	if len(s.Subcommands) > 0 {
		head += ": " + strings.Join(s.Subcommands, ", ")
	}
	fmt.Fprintf(w, "   %s\n", head)
	if len(s.Locks) == 0 && s.Class != guard.ClassTransaction && s.Class != guard.ClassSession {
		fmt.Fprintln(w, "   no table locks")
	}
	if len(s.Locks) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, l := range s.Locks {
			what := l.Mode.Blocks() + " of " + l.Rel.String() + " until commit"
			role := l.Role.String()
			if l.Index != "" {
				role += " " + l.Index
			}
			if l.Conditional {
				role += " (if reached)"
			}
			fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\n", l.Mode, l.Rel, role, what)
		}
		tw.Flush()
	}
	if s.Class != guard.ClassTransaction && s.Class != guard.ClassSession {
		block := "allowed"
		if s.NoTxBlock {
			block = "NOT allowed (run it in autocommit, alone in its query string)"
		}
		conc := ""
		if s.Concurrently {
			conc = "   concurrently: yes"
		}
		fmt.Fprintf(w, "   rewrites table: %s   scans table: %s%s   transaction block: %s\n", yesNo(s.Rewrite), yesNo(s.Scan), conc, block)
	} else if s.NoTxBlock {
		fmt.Fprintln(w, "   transaction block: NOT allowed")
	}
	for _, c := range s.Settings {
		scope := "session"
		switch {
		case c.LocalParam > 0:
			scope = fmt.Sprintf("transaction (LOCAL) when $%d is true, else session", c.LocalParam)
		case c.Local:
			scope = "transaction (LOCAL)"
		}
		name := paramOr(c.Name, c.NameParam)
		switch {
		case c.Reset:
			fmt.Fprintf(w, "   setting: reset %s (%s)\n", name, scope)
		case c.Param > 0:
			fmt.Fprintf(w, "   setting: %s = $%d (%s)\n", name, c.Param, scope)
		default:
			fmt.Fprintf(w, "   setting: %s = '%s' (%s)\n", name, c.Value, scope)
		}
	}
	for _, u := range s.Unknown {
		fmt.Fprintf(w, "   unknown: %s\n", u)
	}
	if len(s.Unknown) > 0 && !catalog {
		fmt.Fprintln(w, "   (pass --dsn to consult the live catalog)")
	}
	for _, note := range s.Notes {
		fmt.Fprintf(w, "   note: %s\n", note)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}
