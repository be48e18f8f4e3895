package daemon

import (
	"strings"
	"testing"
)

func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		name         string
		log          string
		bytes, lines int64
		want         string
	}{
		{"all", "a\nb\nc\n", 0, 0, "a\nb\nc\n"},
		{"last line", "a\nb\nc\n", 0, 1, "c\n"},
		{"two lines", "a\nb\nc\n", 0, 2, "b\nc\n"},
		{"more lines than there are", "a\nb\n", 0, 5, "a\nb\n"},
		{"unterminated last line", "a\nb\nc", 0, 1, "c"},
		{"bytes", "abcdef", 3, 0, "def"},
		{"bytes cut before lines", "a\nbb\ncc\n", 4, 3, "\ncc\n"},
		{"empty", "", 0, 3, ""},
		{"long", strings.Repeat("x", 3*logChunk) + "\nlast\n", 0, 1, "last\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := strings.NewReader(tc.log)
			off, err := tailOffsetIn(r, int64(len(tc.log)), tc.bytes, tc.lines)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.log[off:]; got != tc.want {
				t.Errorf("tail = %q, want %q", got, tc.want)
			}
		})
	}
}
