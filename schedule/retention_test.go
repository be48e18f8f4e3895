package schedule

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// series is n sealed checkpoints "c0" (oldest) .. "c<n-1>", step apart,
// each of size bytes.
func series(n int, step time.Duration, size int64) []Candidate {
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var out []Candidate
	for i := range n {
		out = append(out, Candidate{ID: "c" + strconv.Itoa(i), Created: base.Add(time.Duration(i) * step), Size: size, Sealed: true})
	}
	return out
}

func ids(names ...int) []string {
	var out []string
	for _, n := range names {
		out = append(out, "c"+strconv.Itoa(n))
	}
	return out
}

func TestPrunable(t *testing.T) {
	sealing := series(4, time.Minute, 10)
	sealing[3].Sealed = false
	for _, tc := range []struct {
		name string
		r    Retention
		cs   []Candidate
		want []string
	}{
		{"no policy keeps all", Retention{}, series(5, time.Minute, 10), nil},
		{"keep last 2", Retention{KeepLast: 2}, series(5, time.Minute, 10), ids(0, 1, 2)},
		{"newest per hour", Retention{KeepHourly: 2}, series(6, 30*time.Minute, 10), ids(0, 1, 2, 4)},
		{"hourly and last apply together", Retention{KeepLast: 1, KeepHourly: 3}, series(6, 30*time.Minute, 10), ids(0, 2, 4)},
		{"daily", Retention{KeepDaily: 2}, series(6, 12*time.Hour, 10), ids(0, 1, 2, 4)},
		{"max bytes drops the oldest", Retention{MaxBytes: 25}, series(5, time.Minute, 10), ids(0, 1, 2)},
		{"max bytes never drops the newest", Retention{MaxBytes: 5}, series(3, time.Minute, 10), ids(0, 1)},
		{"max bytes over keep last", Retention{KeepLast: 4, MaxBytes: 30}, series(5, time.Minute, 10), ids(0, 1)},
		{"a sealing checkpoint stays and the newest sealed too", Retention{KeepLast: 1}, sealing, ids(0, 1)},
		{"nothing to prune", Retention{KeepLast: 3}, series(2, time.Minute, 10), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Prunable(tc.cs); !slices.Equal(got, tc.want) {
				t.Errorf("prunable: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"20GiB", 20 << 30, true}, {"1.5 MiB", 3 << 19, true}, {"2GB", 2e9, true},
		{"", 0, false}, {"-1GiB", 0, false}, {"lots", 0, false}, {"1ZiB", 0, false},
		{"8M", 8 << 20, true}, {"8m", 8 << 20, true}, {"512K", 512 << 10, true}, {"1G", 1 << 30, true}, {"M", 0, false},
	} {
		got, err := ParseBytes(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
