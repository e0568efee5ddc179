package guard

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Analyzer turns SQL text into Analyses, caching them by text. It is safe for
// concurrent use. The zero value analyses without a catalog and without a
// cache.
type Analyzer struct {
	// Catalog supplies live schema facts; nil analyses from the text alone
	// and lists what it could not know in Statement.Unknown.
	Catalog Catalog

	cache *cache
	// codes keeps what the PL/pgSQL bodies of procedures take, for the
	// CALLs of one procedure with other arguments (nil: none kept).
	codes *codeCache
	size  int // the cache's size, for ForPath's

	pathMu   sync.Mutex
	paths    map[string]*Analyzer // ForPath's, by path
	textOnly *Analyzer            // ForPath's beyond maxPathAnalyzers
}

// NewAnalyzer returns an Analyzer that consults cat (which may be nil) and
// keeps up to cacheSize analyses; cacheSize ≤ 0 disables the cache.
func NewAnalyzer(cat Catalog, cacheSize int) *Analyzer {
	a := &Analyzer{Catalog: cat, cache: newCache(cacheSize), size: cacheSize}
	if a.cache != nil {
		a.codes = newCodeCache()
	}
	return a
}

// Analyze parses sql — one or more statements, as in a simple Query message
// or an extended-protocol Parse — and returns what each statement locks.
//
// The result is cached by the text without its leading and trailing comments
// (so sqlcommenter tags do not defeat the cache) and is shared between
// callers: it must not be modified. A cache hit does not allocate.
func (a *Analyzer) Analyze(sql string) *Analysis {
	if a.cache == nil {
		return analyze(cacheKey(sql), a.Catalog)
	}
	an, key, h := a.cache.lookup(sql)
	if an != nil {
		return an
	}
	key = strings.Clone(key) // do not retain the caller's buffer
	an = analyzeWith(key, a.Catalog, a.codes)
	a.cache.put(key, h, an)
	return an
}

// Cached returns the cached analysis of sql, or nil: unlike Analyze it never
// parses nor consults the Catalog, so it never waits.
func (a *Analyzer) Cached(sql string) *Analysis {
	if a.cache == nil {
		return nil
	}
	an, _, _ := a.cache.lookup(sql)
	return an
}

// Purge drops every cached analysis. Call it when the schema may have
// changed in a way the Catalog reports differently (a foreign key added, a
// partition attached), so that analyses that used catalog facts are redone.
func (a *Analyzer) Purge() {
	if a.cache != nil {
		a.cache.purge()
		a.codes.purge()
	}
	a.purgePaths()
}

// CacheBytes returns what the cached analyses count against the cache's
// byte bound (their texts, plus a fixed cost each).
func (a *Analyzer) CacheBytes() int {
	if a.cache == nil {
		return 0
	}
	return a.cache.bytes()
}

// CacheLen returns the number of cached analyses.
func (a *Analyzer) CacheLen() int {
	if a.cache == nil {
		return 0
	}
	return a.cache.len()
}

// errInternal marks a bug in the mapping caught while analysing (the fuzz
// target fails on it).
var errInternal = errors.New("guard: internal error")

// Analyze analyses sql without a catalog or a cache.
func Analyze(sql string) *Analysis { return analyze(cacheKey(sql), nil) }

func analyze(sql string, cat Catalog) *Analysis { return analyzeWith(sql, cat, nil) }

// analyzeWith is analyze that keeps and reuses what procedures' bodies
// take in codes (nil: nothing kept).
func analyzeWith(sql string, cat Catalog, codes *codeCache) (an *Analysis) {
	an = &Analysis{SQL: sql}
	defer func() {
		// The mapping walks parse trees that the fuzzer shapes; a bug there
		// must cost one analysis, not the proxy.
		if r := recover(); r != nil {
			an.Statements = nil
			an.Err = fmt.Errorf("%w analysing statement: %v", errInternal, r)
		}
	}()
	if strings.TrimSpace(sql) == "" {
		return an
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		an.Err = err
		return an
	}
	an.Statements = make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		start := int(raw.StmtLocation)
		end := len(sql)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		start, end = trimStatement(sql, start, end)
		b := newBuilder(cat)
		b.codes = codes
		b.stmt(raw.Stmt)
		b.markLasting(raw.Stmt, sql[start:end])
		b.finish()
		b.st.Start, b.st.End = start, end
		an.Statements = append(an.Statements, b.st)
	}
	an.ptrs = statementPtrs(an.Statements)
	return an
}

// trimStatement narrows [start,end) to exclude surrounding white space and
// comments.
func trimStatement(sql string, start, end int) (int, int) {
	if start < 0 {
		start = 0
	}
	if end > len(sql) {
		end = len(sql)
	}
	if start > end {
		return end, end
	}
	k := cacheKey(sql[start:end])
	if k == "" {
		return start, start
	}
	off := strings.Index(sql[start:end], k)
	if off < 0 {
		return start, end
	}
	return start + off, start + off + len(k)
}
