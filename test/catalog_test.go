package test

import (
	"testing"
	"time"

	"github.com/lockguard/lockguard/guard"
	"github.com/lockguard/lockguard/guard/pgcatalog"
)

// TestCatalogExtensions checks the catalog facts the policy's scopes and
// rules use (sizes, column types, constraint definitions) on PostgreSQL.
func TestCatalogExtensions(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	conn := connect(t, directDSN())
	cat, err := pgcatalog.New(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE ext_t (id int NOT NULL, name varchar(20), CONSTRAINT ext_chk CHECK (name IS NOT NULL));
		INSERT INTO ext_t SELECT g, 'n' FROM generate_series(1, 500) g; ANALYZE ext_t`); err != nil {
		t.Fatal(err)
	}
	rel := guard.RelName{Name: "ext_t"}
	rows, bytes, ok := cat.TableSize(rel)
	if !ok || rows != 500 || bytes <= 0 {
		t.Fatalf("TableSize = %d, %d, %v", rows, bytes, ok)
	}
	typ, notNull, ok := cat.ColumnType(rel, "name")
	if !ok || typ != "character varying(20)" || notNull {
		t.Fatalf("ColumnType(name) = %q, %v, %v", typ, notNull, ok)
	}
	if _, notNull, _ := cat.ColumnType(rel, "id"); !notNull {
		t.Fatal("id not reported NOT NULL")
	}
	def, ok := cat.ConstraintDef(rel, "ext_chk")
	if !ok || def != "CHECK ((name IS NOT NULL))" {
		t.Fatalf("ConstraintDef = %q, %v", def, ok)
	}
	if _, _, ok := cat.TableSize(guard.RelName{Name: "no_such_table"}); ok {
		t.Fatal("size of a missing table")
	}
}
