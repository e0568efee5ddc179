package guard

import "strings"

// ContainsFold reports whether s contains the lower-case ASCII word w in any
// case, without allocating. Candidates are found with IndexByte (vectorised)
// for the first letter in either case; each case's next candidate is looked
// for again only once passed, so s is scanned about twice whatever it holds.
func ContainsFold(s, w string) bool {
	lo, up := w[0], w[0]-('a'-'A')
	end := len(s) - len(w) + 1 // candidates start before end
	if end <= 0 {
		return false
	}
	nextLo, nextUp := indexFrom(s[:end], lo, 0), indexFrom(s[:end], up, 0)
	for nextLo >= 0 || nextUp >= 0 {
		i := nextLo
		if i < 0 || nextUp >= 0 && nextUp < i {
			i = nextUp
		}
		if EqualFoldLower(s[i:i+len(w)], w) {
			return true
		}
		if i == nextLo {
			nextLo = indexFrom(s[:end], lo, i+1)
		} else {
			nextUp = indexFrom(s[:end], up, i+1)
		}
	}
	return false
}

// indexFrom returns the index of the first c in s at or after from, or -1.
func indexFrom(s string, c byte, from int) int {
	if j := strings.IndexByte(s[from:], c); j >= 0 {
		return from + j
	}
	return -1
}

// EqualFoldLower reports whether s, at least as long as w, begins with the
// lower-case ASCII w in any case.
func EqualFoldLower(s, w string) bool {
	for j := 0; j < len(w); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
}
