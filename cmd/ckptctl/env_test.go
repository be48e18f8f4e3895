package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWorkloadEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("# comment\n\nA=from-file\nB=b\nHOME\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"HOME": "/home/u", "SECRET": "s"}[k]
		return v, ok
	}
	for _, c := range []struct {
		name        string
		envs, files []string
		tty         bool
		want        []string
		fails       bool
	}{
		{"nothing of the client's", nil, nil, false, []string{defaultPath}, false},
		{"terminal", nil, nil, true, []string{defaultPath, "TERM=xterm"}, false},
		{"set and pass on", []string{"X=1", "SECRET", "MISSING"}, nil, false, []string{defaultPath, "X=1", "SECRET=s"}, false},
		{"file, then flags win", []string{"A=flag"}, []string{file}, false, []string{defaultPath, "A=flag", "B=b", "HOME=/home/u"}, false},
		{"own PATH", []string{"PATH=/opt/bin"}, nil, false, []string{"PATH=/opt/bin"}, false},
		{"value with =", []string{"Q=a=b"}, nil, false, []string{defaultPath, "Q=a=b"}, false},
		{"no name", []string{"=x"}, nil, false, nil, true},
		{"missing file", nil, []string{file + ".none"}, false, nil, true},
	} {
		got, err := workloadEnv(c.envs, c.files, c.tty, lookup)
		if (err != nil) != c.fails || !c.fails && !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, %v; want %v (fails %v)", c.name, got, err, c.want, c.fails)
		}
	}
}
