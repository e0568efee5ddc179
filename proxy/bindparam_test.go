package proxy

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func bindBody(t testing.TB, b *pgproto3.Bind) []byte {
	t.Helper()
	msg, err := b.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return msg[5:]
}

func TestBindParam(t *testing.T) {
	body := bindBody(t, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s1",
		ParameterFormatCodes: []int16{0, 1, 0}, Parameters: [][]byte{[]byte("search_a"), nil, []byte("")}})
	for _, c := range []struct {
		n      int
		want   string
		format int16
		ok     bool
	}{
		{1, "search_a", 0, true},
		{2, "", 0, false}, // NULL
		{3, "", 0, true},
		{0, "", 0, false},
		{4, "", 0, false},
	} {
		v, f, ok := BindParam(body, c.n)
		if ok != c.ok || string(v) != c.want || f != c.format {
			t.Fatalf("$%d: %q, %d, %v; want %q, %d, %v", c.n, v, f, ok, c.want, c.format, c.ok)
		}
	}
	// One format code applies to every parameter.
	one := bindBody(t, &pgproto3.Bind{ParameterFormatCodes: []int16{1}, Parameters: [][]byte{[]byte("a"), []byte("bc")}})
	if v, f, ok := BindParam(one, 2); !ok || f != 1 || string(v) != "bc" {
		t.Fatalf("one format code: %q, %d, %v", v, f, ok)
	}
	// Every truncation is refused or answered from what is there, never
	// read past the end.
	for i := range body {
		if v, _, ok := BindParam(body[:i], 1); ok && string(v) != "search_a" {
			t.Fatalf("truncated to %d: %q", i, v)
		}
	}
}

// FuzzBindParam checks BindParam against pgproto3's decoder: wherever
// pgproto3 and PostgreSQL accept a Bind body, every parameter reads the
// same. (pgproto3 also accepts several format codes that are not one per
// parameter, which PostgreSQL refuses with 08P01 and BindParam reads as no
// value.)
func FuzzBindParam(f *testing.F) {
	f.Add(bindBody(f, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", ParameterFormatCodes: []int16{0, 1},
		Parameters: [][]byte{[]byte("x"), nil}, ResultFormatCodes: []int16{1}}))
	f.Add(bindBody(f, &pgproto3.Bind{Parameters: [][]byte{[]byte("abc")}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b pgproto3.Bind
		decoded := b.Decode(body) == nil
		if nf := len(b.ParameterFormatCodes); nf > 1 && nf != len(b.Parameters) {
			decoded = false
		}
		for n := 0; n <= len(b.Parameters)+1; n++ {
			v, f, ok := BindParam(body, n)
			if !decoded {
				continue // BindParam may still read what is there; it must not panic
			}
			want, wantOK := []byte(nil), false
			var wantF int16
			if n >= 1 && n <= len(b.Parameters) && b.Parameters[n-1] != nil {
				want, wantOK = b.Parameters[n-1], true
				switch len(b.ParameterFormatCodes) {
				case 0:
				case 1:
					wantF = b.ParameterFormatCodes[0]
				default:
					wantF = b.ParameterFormatCodes[n-1]
				}
			}
			if ok != wantOK || !bytes.Equal(v, want) || ok && f != wantF {
				t.Fatalf("$%d: %q, %d, %v; pgproto3 has %q, %d, %v", n, v, f, ok, want, wantF, wantOK)
			}
		}
	})
}
