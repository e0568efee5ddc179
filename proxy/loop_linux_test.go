package proxy

import "testing"

func TestAsyncPreemption(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                                  true,
		"madvdontneed=1":                    true,
		"asyncpreemptoff=0":                 true,
		"asyncpreemptoff=1":                 false,
		"madvdontneed=1, asyncpreemptoff=1": false,
		"gccheckmark=1":                     false,
		"asyncpreemptoff=10":                true,
	} {
		if got := asyncPreemption(godebug); got != want {
			t.Errorf("asyncPreemption(%q) = %v, want %v", godebug, got, want)
		}
	}
}
