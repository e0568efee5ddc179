package guard

import (
	"slices"
	"testing"
)

// TestForPathResolvesInTheSessionsSchemas: the same text names the tables
// of the session's search_path, each path's analysis cached apart; the
// catalog's own resolution (public) is not reused for another path.
func TestForPathResolvesInTheSessionsSchemas(t *testing.T) {
	pub := func(n string) RelName { return RelName{"public", n} }
	ten := func(n string) RelName { return RelName{"tenant", n} }
	cat := &StaticCatalog{
		Relations: []RelInfo{
			{Name: pub("orders"), Kind: KindTable}, {Name: pub("users"), Kind: KindTable},
			{Name: ten("orders"), Kind: KindTable}, {Name: ten("users"), Kind: KindTable},
			{Name: RelName{"pg_catalog", "pg_class"}, Kind: KindTable},
		},
		Cons: []Constraint{
			{Name: "orders_owner", Table: ten("orders"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: ten("users"), RefColumns: []string{"id"}, Validated: true},
			{Name: "orders_owner", Table: pub("orders"), Type: ConstraintCheck, Columns: []string{"user_id"}},
		},
		VersionNum: 150004,
	}
	a := NewAnalyzer(cat, 100)
	sql := "ALTER TABLE orders DROP CONSTRAINT orders_owner"
	locked := func(an *Analysis) []RelName {
		var out []RelName
		for _, l := range an.Statements[0].Locks {
			out = append(out, l.Rel)
		}
		return out
	}
	if got := locked(a.Analyze(sql)); !slices.Equal(got, []RelName{pub("orders")}) {
		t.Errorf("the catalog's path: locks %v, want public.orders alone (a CHECK there)", got)
	}
	tenant := a.ForPath([]string{"tenant", "public"})
	if got := locked(tenant.Analyze(sql)); !slices.Equal(got, []RelName{ten("orders"), ten("users")}) {
		t.Errorf("search_path tenant, public: locks %v, want tenant.orders and tenant.users (its foreign key)", got)
	}
	if a.ForPath([]string{"tenant", "public"}) != tenant {
		t.Error("a second ForPath of the same path made another analyzer")
	}
	if got := locked(a.ForPath([]string{"nosuch"}).Analyze("SELECT * FROM pg_class")); !slices.Equal(got, []RelName{{"pg_catalog", "pg_class"}}) {
		t.Errorf("pg_class with a path that does not name pg_catalog: %v", got)
	}
	a.Purge()
	if n := tenant.CacheLen(); n != 0 {
		t.Errorf("Purge left %d analyses of the tenant's path", n)
	}
}

// TestForPathDoesNotFallBackToTheCatalogsPath: a table the session's path
// does not have is unknown, not the table of that name in the side
// connection's search_path.
func TestForPathDoesNotFallBackToTheCatalogsPath(t *testing.T) {
	ten := func(n string) RelName { return RelName{"tenant", n} }
	cat := &StaticCatalog{
		SearchPath: []string{"tenant"},
		Relations:  []RelInfo{{Name: ten("orders"), Kind: KindTable}, {Name: ten("users"), Kind: KindTable}},
		Cons: []Constraint{
			{Name: "orders_owner", Table: ten("orders"), Type: ConstraintForeignKey, Columns: []string{"user_id"}, RefTable: ten("users"), RefColumns: []string{"id"}, Validated: true},
		},
		VersionNum: 150004,
	}
	other := NewAnalyzer(cat, 100).ForPath([]string{"other"}).Catalog
	if info, ok := other.Relation(RelName{Name: "orders"}); ok {
		t.Errorf("search_path other: orders is %v", info.Name)
	}
	// The policy's rules ask by name (sizes, column types, constraints).
	if cons, _ := other.Constraints(RelName{Name: "orders"}); len(cons) > 0 {
		t.Errorf("search_path other: constraints of orders %+v, from the catalog's own search_path", cons)
	}
}
