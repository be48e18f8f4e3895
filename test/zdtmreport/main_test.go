package main

import (
	"strings"
	"testing"
)

const rawTAP = `TAP version 13
# Hardware architecture: x86_64
1..4
ok 1 - zdtm/static/env00
ok 2 - zdtm/static/pty00
not ok 3 - zdtm/static/socket-tcpbuf-local # flavor h
--- |
  === Run 3/4 ====
  Test zdtm/static/socket-tcpbuf-local FAIL at ['kill', '-TERM'] (timeout)
...
ok 4 - zdtm/static/cgroup00 # SKIP manual run only
not ok 5 - zdtm/static/fifo # flavor h
  b"(00.021327) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted"
  b"(00.028234) Error (criu/cr-dump.c:389): Can't get rlimit 0: Operation not permitted"
`

const ckptdTAP = `TAP version 13
1..4
ok 1 - zdtm/static/env00
not ok 2 - zdtm/static/pty00 # flavor h
--- |
  Test zdtm/static/pty00 FAIL at CRIU restore
  Error (zdtmcriu): ckptctl restore failed: ckptctl: restore x: needs files this host lacks: /dev/pts/0
...
ok 3 - zdtm/static/socket-tcpbuf-local
ok 4 - zdtm/static/cgroup00 # SKIP manual run only
not ok 5 - zdtm/static/fifo # flavor h
  Error (zdtmcriu): ckptctl create failed: ckptctl: process 9 runs as uid 18943
`

func TestParseTAP(t *testing.T) {
	got, err := parseTAP(strings.NewReader(ckptdTAP))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]result{
		"zdtm/static/env00":               {status: "pass"},
		"zdtm/static/pty00":               {"fail", "ckptctl restore failed: ckptctl: restore x: needs files this host lacks: /dev/pts/0"},
		"zdtm/static/socket-tcpbuf-local": {status: "pass"},
		"zdtm/static/cgroup00":            {"skip", "manual run only"},
		"zdtm/static/fifo":                {"fail", "ckptctl create failed: ckptctl: process 9 runs as uid 18943"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results %v, want %d", len(got), got, len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %+v, want %+v", name, got[name], w)
		}
	}
}

func TestReport(t *testing.T) {
	raw, _ := parseTAP(strings.NewReader(rawTAP))
	ck, _ := parseTAP(strings.NewReader(ckptdTAP))
	var b strings.Builder
	report(&b, raw, ck)
	out := b.String()
	for _, want := range []string{
		"raw CRIU passed 2 of 4 run (1 skipped); through ckptd 2 of 4 run (1 skipped)",
		"passed raw, failed through ckptd: 1\n  pty00",
		"needs files this host lacks: /dev/pts/0",
		"failed raw, passed through ckptd: 1\n  socket-tcpbuf-local",
		"Test zdtm/static/socket-tcpbuf-local FAIL at ['kill', '-TERM'] (timeout)",
		"failed on both sides: 1\n  1, raw CRIU: Can't get rlimit 0: Operation not permitted\n    fifo\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
