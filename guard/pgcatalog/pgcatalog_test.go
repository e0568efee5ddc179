package pgcatalog

import (
	"testing"

	"github.com/lockguard/lockguard/guard"
)

// The queries themselves are exercised against a real server by
// test/locks_groundtruth_test.go and cmd/lockguard's TestExplainDSN.

func TestParseQualified(t *testing.T) {
	for in, want := range map[string]guard.RelName{
		"public.users":        {Schema: "public", Name: "users"},
		`"My Schema"."Tbl.x"`: {Schema: "My Schema", Name: "Tbl.x"},
		`app."we""ird"`:       {Schema: "app", Name: `we"ird`},
		"lonely":              {Name: "lonely"},
		`"a.b".c`:             {Schema: "a.b", Name: "c"},
	} {
		if got := parseQualified(in); got != want {
			t.Errorf("parseQualified(%q) = %#v, want %#v", in, got, want)
		}
	}
}

func TestRegclassText(t *testing.T) {
	if got := regclassText(guard.RelName{Name: "Users"}); got != `"Users"` {
		t.Errorf("unqualified: %s", got)
	}
	if got := regclassText(guard.RelName{Schema: "s", Name: `a"b`}); got != `"s"."a""b"` {
		t.Errorf("qualified: %s", got)
	}
}
