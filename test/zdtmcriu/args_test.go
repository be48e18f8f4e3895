package main

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		want    call
		wantErr bool
	}{
		{
			name: "zdtm's dump",
			argv: []string{"dump", "--no-default-config", "--log-file", "dump.log", "--images-dir", "/d/1", "--verbosity=4", "--tree", "42", "--tcp-established", "--timeout", "10"},
			want: call{action: "dump", pid: "42", dir: "/d/1", log: "dump.log", flags: []string{"--tcp-established"}},
		},
		{
			name: "options ckptctl lacks go to the configuration",
			argv: []string{"dump", "-D", "/d", "-t", "7", "-v4", "--ghost-limit", "8M", "--no-ghost-fiemap", "--external", "mnt[]:s", "--manage-cgroups=full"},
			want: call{action: "dump", pid: "7", dir: "/d", flags: []string{"--ghost-limit", "8M"}, config: []string{"no-ghost-fiemap", "external mnt[]:s", "manage-cgroups=full"}},
		},
		{
			name: "a restore carries the dump's options and refuses others",
			argv: []string{"restore", "--images-dir", "/d", "--tcp-established", "--tcp-close", "--join-ns", "net:/x", "--restore-detached", "--pidfile", "/t.pid"},
			want: call{action: "restore", dir: "/d", pidfile: "/t.pid", flags: []string{"--tcp-close"}, refused: []string{"--join-ns=net:/x"}},
		},
		{name: "check passes through", argv: []string{"check", "--feature", "uffd"}, want: call{action: "check"}},
		{name: "argument missing", argv: []string{"dump", "--images-dir"}, wantErr: true},
		{name: "dump without a tree", argv: []string{"dump", "--images-dir", "/d"}, wantErr: true},
		{name: "stray word", argv: []string{"restore", "-D", "/d", "oops"}, wantErr: true},
		{name: "nothing", argv: nil, wantErr: true},
	}
	for _, tc := range tests {
		got, err := parse(tc.argv)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if got.action != tc.want.action || got.pid != tc.want.pid || got.dir != tc.want.dir || got.log != tc.want.log ||
			got.pidfile != tc.want.pidfile || !slices.Equal(got.flags, tc.want.flags) || !slices.Equal(got.config, tc.want.config) || !slices.Equal(got.refused, tc.want.refused) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
