package guard

// savepoints is a transaction's savepoints, innermost last, each with the
// state V had when it was set: what ROLLBACK TO SAVEPOINT returns to.
// Settings and TxState each keep one.
type savepoints[V any] []savepoint[V]

type savepoint[V any] struct {
	name  string
	state V
}

// set adds a savepoint.
func (s *savepoints[V]) set(name string, state V) {
	*s = append(*s, savepoint[V]{name, state})
}

// release forgets the innermost savepoint named name and those set after
// it; what was done since stays. An unknown name changes nothing
// (PostgreSQL refuses it).
func (s *savepoints[V]) release(name string) {
	if i := s.find(name); i >= 0 {
		clear((*s)[i:])
		*s = (*s)[:i]
	}
}

// rollbackTo forgets the savepoints set after the innermost one named name,
// which stays, and returns the state it holds; ok is false for an unknown
// name.
func (s *savepoints[V]) rollbackTo(name string) (state V, ok bool) {
	i := s.find(name)
	if i < 0 {
		return state, false
	}
	clear((*s)[i+1:])
	*s = (*s)[:i+1]
	return (*s)[i].state, true
}

// reset forgets every savepoint, keeping the storage.
func (s *savepoints[V]) reset() {
	clear(*s)
	*s = (*s)[:0]
}

func (s savepoints[V]) find(name string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].name == name {
			return i
		}
	}
	return -1
}
