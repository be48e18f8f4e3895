package criu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want int
		ok   bool
	}{
		{"Version: 4.1.1\n", 40101, true},
		{"Version: 3.17.1\nGitID: v3.17.1\n", 31701, true},
		{"Version: 4.2\n", 40200, true},
		{"criu: garbage\n", 0, false},
		{"Version: x.y\n", 0, false},
	} {
		got, err := parseVersion(tc.out)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseVersion(%q) = %d, %v; want %d ok=%v", tc.out, got, err, tc.want, tc.ok)
		}
	}
}

func TestErrorNamesLogAndCause(t *testing.T) {
	log := filepath.Join(t.TempDir(), "dump.log")
	os.WriteFile(log, []byte("(00.001) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"+
		"(00.002) Info ok\n(00.003) Error (criu/cr-dump.c:1): Dumping FAILED.\n"), 0o600)
	msg := Error("dump", log, errors.New("operation failed (msg:Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self)")).Error()
	if !strings.Contains(msg, "(log: "+log+")") || !strings.Contains(msg, "Dumping FAILED") {
		t.Errorf("error lacks log path or cause: %s", msg)
	}
	if strings.Contains(msg, "RLIMIT_NOFILE") {
		t.Errorf("error repeats the harmless rlimit line: %s", msg)
	}
	if msg := Error("dump", filepath.Join(t.TempDir(), "none.log"), errors.New("boom")).Error(); !strings.Contains(msg, "none.log") {
		t.Errorf("missing log not named: %s", msg)
	}
}
