package main

import "testing"

func TestSizeFlags(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"8M", 8 << 20, true}, {"8MiB", 8 << 20, true}, {"4096", 4096, true}, {"1G", 1 << 30, true},
		{"4G", 0, false}, {"-1", 0, false}, {"eight", 0, false},
	} {
		var got uint32
		err := (&uint32Size{p: &got}).Set(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("--ghost-limit %s: %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	var n int64
	if err := (sizeFlag{n: &n, max: 1 << 62}).Set("2K"); err != nil || n != 2048 {
		t.Errorf("--tail-bytes 2K: %d, %v", n, err)
	}
}
