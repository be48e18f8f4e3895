package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNeedProblem(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling") // a relative target not there
	if err := os.Symlink("elsewhere/file", dangling); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		need Need
		want string // "" or a part of the problem
	}{
		{Need{Path: file, Size: 3}, ""},
		{Need{Path: file, Size: 4}, "has 3 bytes"},
		{Need{Path: dir, Size: -1, Dir: true}, ""},
		{Need{Path: file, Size: -1, Dir: true}, "no longer a directory"},
		{Need{Path: filepath.Join(dir, "gone"), Size: -1}, "is missing"},
		{Need{Path: dangling, Size: -1, Link: true}, ""},
		{Need{Path: dangling, Size: -1}, "is missing"}, // followed, as a file is
		{Need{Path: file, Size: -1, Link: true}, "no longer a symbolic link"},
	}
	for _, tc := range tests {
		got := tc.need.Problem()
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: %q, want %q", tc.need, got, tc.want)
		}
	}
}
