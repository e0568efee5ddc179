package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockguard/lockguard/internal/enforce"
)

// TestLargeTextsDoNotFillTheAnalysisCache: unique 1 MiB INSERTs whose
// values hold a ';' are not plain writes, so the guard analyses and caches
// each one. Through lockguard, against PostgreSQL, the analysis cache must
// stay within its byte bound (64 MiB): bounded by entries alone it kept
// every text, about 1.6 MB of memory each, toward gigabytes.
func TestLargeTextsDoNotFillTheAnalysisCache(t *testing.T) {
	var g *enforce.Guard
	lg := startGuarded(t, func(gg *enforce.Guard) { g = gg })
	ctx := ctxT(t, 120*time.Second)
	tbl := createTable(t, ctx, "largetext", "v text")
	conn := connect(t, lg.superDSN())
	body := strings.Repeat("x", 1<<20)
	const n = 96 // MiB of text, over the bound
	for i := range n {
		sql := fmt.Sprintf("INSERT INTO %s VALUES ('%d;%s')", tbl, i, body)
		if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	var rows int
	if err := connect(t, directDSN()).QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&rows); err != nil || rows != n {
		t.Fatalf("rows %d (%v), want %d", rows, err, n)
	}
	held := g.Analyzer.CacheBytes()
	if held > 64<<20 || held < 1<<20 {
		t.Errorf("the analysis cache counts %d bytes after %d unique 1 MiB statements; want at most 64 MiB and at least one of them", held, n)
	}
}
