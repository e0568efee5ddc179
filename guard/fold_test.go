package guard

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestContainsFold(t *testing.T) {
	for _, tc := range []struct {
		s, w string
		want bool
	}{
		{"SELECT * INTO t", "into", true}, {"select 1", "into", false}, {"iNtO", "into", true},
		{"int", "into", false}, {"", "into", false}, {"x SET_CONFIG(", "set_config", true},
		{"s s se set set_confi", "set_config", false},
		{"advisory", "advisory", true}, {"x_AdViSoRy_y", "advisory", true}, {"advisor", "advisory", false},
		{"", "advisory", false}, {"ADVISOR Y", "advisory", false}, {"aadvisory", "advisory", true},
	} {
		if got := ContainsFold(tc.s, tc.w); got != tc.want {
			t.Errorf("ContainsFold(%q, %q) = %v", tc.s, tc.w, got)
		}
	}
}

// TestContainsFoldMatchesLowering compares ContainsFold with lowering the
// text and searching it, on random texts made of the word's letters in both
// cases, where candidates and near misses are dense.
func TestContainsFoldMatchesLowering(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, w := range []string{"into", "set_config", "s"} {
		alphabet := w + strings.ToUpper(w) + " ;"
		for range 5000 {
			b := make([]byte, rng.IntN(3*len(w)+4))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(b)
			if got, want := ContainsFold(s, w), strings.Contains(strings.ToLower(s), w); got != want {
				t.Fatalf("ContainsFold(%q, %q) = %v, want %v", s, w, got, want)
			}
		}
	}
}
