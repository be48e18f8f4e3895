package term

import (
	"bytes"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		bad  bool
	}{
		{in: "ctrl-p,ctrl-q", want: []byte{0x10, 0x11}},
		{in: "ctrl-a,d", want: []byte{0x01, 'd'}},
		{in: "CTRL-X", want: []byte{0x18}},
		{in: "ctrl-[", want: []byte{0x1b}},
		{in: "ctrl-@", want: []byte{0}},
		{in: "ctrl-", bad: true},
		{in: "ctrl-pq", bad: true},
		{in: "ab", bad: true},
		{in: "", bad: true},
	} {
		got, err := ParseDetachKeys(tc.in)
		if tc.bad != (err != nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseDetachKeys(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestDetacher(t *testing.T) {
	pq := []byte{0x10, 0x11}
	for _, tc := range []struct {
		name   string
		keys   []byte
		chunks []string
		out    string
		detach bool
	}{
		{name: "plain keys", keys: pq, chunks: []string{"print(x)\r"}, out: "print(x)\r"},
		{name: "sequence", keys: pq, chunks: []string{"ab\x10\x11cd"}, out: "ab", detach: true},
		{name: "split across reads", keys: pq, chunks: []string{"ab\x10", "\x11"}, out: "ab", detach: true},
		{name: "first key alone goes on", keys: pq, chunks: []string{"\x10", "x"}, out: "\x10x"},
		{name: "first key twice", keys: pq, chunks: []string{"\x10\x10\x11"}, out: "\x10", detach: true},
		{name: "one key", keys: []byte{0x1d}, chunks: []string{"a\x1db"}, out: "a", detach: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetacher(tc.keys)
			var out []byte
			detach := false
			for _, c := range tc.chunks {
				o, leave := d.Feed([]byte(c))
				out = append(out, o...)
				if leave {
					detach = true
					break
				}
			}
			if string(out) != tc.out || detach != tc.detach {
				t.Errorf("sent %q detach %v, want %q %v", out, detach, tc.out, tc.detach)
			}
		})
	}
}
