// Package schedule takes checkpoints of targets on a schedule and prunes
// them by a retention policy, as databases and backup tools do: keep the
// last few, one per hour, one per day, and no more than so many bytes.
package schedule

import (
	"sort"
	"time"
)

// Retention says which of a target's checkpoints to keep. Zero fields do
// not apply; with none set, every checkpoint is kept.
type Retention struct {
	KeepLast   int   `json:"keep_last,omitempty"`
	KeepHourly int   `json:"keep_hourly,omitempty"`
	KeepDaily  int   `json:"keep_daily,omitempty"`
	MaxBytes   int64 `json:"max_bytes,omitempty"`
}

// Candidate is one checkpoint of a target, as retention sees it.
type Candidate struct {
	ID      string
	Created time.Time
	Size    int64
	Sealed  bool // a sealing checkpoint is never removed
}

// Prunable returns the ids the policy no longer keeps, oldest first. It
// never names the newest sealed checkpoint nor one still sealing.
// KeepHourly and KeepDaily keep the newest checkpoint of each of the last
// so many hours (days, UTC) that have one; MaxBytes then removes the oldest
// of what is left until the rest fit.
func (r Retention) Prunable(cs []Candidate) []string {
	byAge := append([]Candidate(nil), cs...)
	sort.SliceStable(byAge, func(i, j int) bool { return byAge[i].Created.After(byAge[j].Created) })
	keep := map[string]bool{}
	newest := ""
	for _, c := range byAge {
		if !c.Sealed {
			keep[c.ID] = true
		} else if newest == "" {
			newest = c.ID
		}
	}
	keep[newest] = true
	if r.KeepLast == 0 && r.KeepHourly == 0 && r.KeepDaily == 0 {
		for _, c := range byAge {
			keep[c.ID] = true
		}
	}
	r.keepLast(byAge, keep)
	keepPerPeriod(byAge, r.KeepHourly, func(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }, keep)
	keepPerPeriod(byAge, r.KeepDaily, func(t time.Time) time.Time {
		y, m, d := t.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}, keep)
	if r.MaxBytes > 0 {
		r.fit(byAge, newest, keep)
	}
	var out []string
	for i := len(byAge) - 1; i >= 0; i-- {
		if id := byAge[i].ID; !keep[id] {
			out = append(out, id)
		}
	}
	return out
}

func (r Retention) keepLast(byAge []Candidate, keep map[string]bool) {
	n := 0
	for _, c := range byAge {
		if n == r.KeepLast {
			return
		}
		if c.Sealed {
			keep[c.ID] = true
			n++
		}
	}
}

// keepPerPeriod keeps the newest sealed checkpoint of each of the newest
// n periods that have one.
func keepPerPeriod(byAge []Candidate, n int, period func(time.Time) time.Time, keep map[string]bool) {
	seen := map[time.Time]bool{}
	for _, c := range byAge {
		if len(seen) == n {
			return
		}
		p := period(c.Created)
		if c.Sealed && !seen[p] {
			seen[p] = true
			keep[c.ID] = true
		}
	}
}

// fit drops kept checkpoints, oldest first and never the newest sealed or
// a sealing one, until the kept ones fit in MaxBytes.
func (r Retention) fit(byAge []Candidate, newest string, keep map[string]bool) {
	var total int64
	for _, c := range byAge {
		if keep[c.ID] {
			total += c.Size
		}
	}
	for i := len(byAge) - 1; i >= 0 && total > r.MaxBytes; i-- {
		c := byAge[i]
		if keep[c.ID] && c.Sealed && c.ID != newest {
			delete(keep, c.ID)
			total -= c.Size
		}
	}
}
