package integration

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

// migrationPhases are log lines that mark how far a migration got, in
// order, with the daemon that writes them (false: the destination).
var migrationPhases = []struct {
	name, line string
	source     bool
}{
	{"pre-flight passed", `msg="incoming migration"`, false},
	{"destination restoring", `msg="criu restore"`, false},
	{"destination restored", "incoming migration phases", false},
	{"source done", `msg=migrated`, true},
}

// TestMigrationCrashCampaign migrates a workload back and forth between
// two hosts and kills the source's or the destination's ckptd at a random
// moment of each migration, restarts it, and checks: never two running
// copies, never none (a copy kept stopped in doubt counts, and is settled
// as an operator would: resumed if the source's copy is gone, discarded
// otherwise), the running copy has the memory it had, every listed
// checkpoint verifies, and no images are left in staging or work dirs.
func TestMigrationCrashCampaign(t *testing.T) {
	a, b := twoHosts(t)
	hosts := []*host{a, b}
	ds := []*daemon{a.ckptd("", ""), b.ckptd("", "")}
	w := ds[0].runLoadIn(t.TempDir(), "mover", 128)
	hash := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	at := 0 // the host the running copy is on
	runs := campaignRuns(t)
	type row struct {
		runs       int
		points     map[string]int
		violations []string
	}
	rows := map[string]*row{"source": {points: map[string]int{}}, "destination": {points: map[string]int{}}}
	for round := range 2 * runs {
		side := []string{"source", "destination"}[round%2]
		r := rows[side]
		r.runs++
		src, dst := ds[at], ds[1-at]
		seen := func() []int {
			var n []int
			for _, p := range migrationPhases {
				d := dst
				if p.source {
					d = src
				}
				n = append(n, strings.Count(d.log.String(), p.line))
			}
			return n
		}
		start := seen()
		wait := src.startCtl("migrate", "mover", "--to", hosts[1-at].addr(), "--restore-timeout", "20s")
		// Aim at a phase (or at no phase in particular), then a little later.
		aimed := time.Now()
		k := rand.IntN(len(migrationPhases) + 1)
		if k < len(migrationPhases) {
			for end := time.Now().Add(30 * time.Second); seen()[k] == start[k] && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		}
		point := "before pre-flight passed"
		for i, n := range seen() {
			if n > start[i] {
				point = migrationPhases[i].name
			}
		}
		r.points[point]++
		victim := src
		if side == "destination" {
			victim = dst
		}
		victim.kill9()
		out, err := wait()
		t.Logf("run %d: aimed at %d for %s; %s ckptd killed at %q; migrate: %v %s", round, k, time.Since(aimed), side, point, err, strings.TrimSpace(out))
		victim.start()
		bad, next := migrationInvariants(t, ds, at, w.Ref.PID, hash)
		for _, v := range bad {
			r.violations = append(r.violations, fmt.Sprintf("run %d (%s): %s", round, point, v))
		}
		if next < 0 {
			t.Fatalf("run %d: no copy left to go on with: %v", round, bad)
		}
		at = next
		w = ds[at].workload("mover")
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%-22s %5s %10s  %s\n", "MIGRATION, KILLED", "RUNS", "VIOLATIONS", "KILL POINTS REACHED")
	for _, side := range []string{"source", "destination"} {
		r := rows[side]
		var pts []string
		for p, n := range r.points {
			pts = append(pts, fmt.Sprintf("%s %d", p, n))
		}
		sort.Strings(pts)
		fmt.Fprintf(&out, "%-22s %5d %10d  %s\n", side+" ckptd", r.runs, len(r.violations), strings.Join(pts, ", "))
		for _, v := range r.violations {
			t.Errorf("%s killed: %s", side, v)
		}
	}
	t.Log(out.String())
}

// migrationInvariants checks both hosts after a killed migration whose
// source was ds[at], settles a copy in doubt, and returns where the one
// running copy is (-1: none).
func migrationInvariants(t *testing.T, ds []*daemon, at, srcPID int, hash string) (bad []string, next int) {
	t.Helper()
	for _, d := range ds {
		d.criuGone(t)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(srcPID) && traced(srcPID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	srcRuns := alive(srcPID) && !traced(srcPID)
	if alive(srcPID) && traced(srcPID) {
		bad = append(bad, "the source's copy is left traced")
	}
	dst := ds[1-at]
	var copy *target
	for _, x := range dst.ps() {
		if x.Ref.Name == "mover" && x.Running {
			copy = &x
		}
	}
	dstRuns := copy != nil && copy.InDoubt == ""
	switch {
	case srcRuns && dstRuns:
		bad = append(bad, "two copies run")
	case copy != nil && copy.InDoubt != "" && srcRuns:
		dst.must("migrate", "--resolve", "mover", "--discard")
	case copy != nil && copy.InDoubt != "":
		dst.must("migrate", "--resolve", "mover", "--resume")
		dstRuns = true
	}
	for _, d := range ds {
		// A destination that runs the target publishes its checkpoint
		// after the source is done: give it time to settle.
		var l []string
		for end := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if l = leftovers(t, d); len(l) == 0 || time.Now().After(end) {
				break
			}
		}
		if len(l) != 0 {
			bad = append(bad, fmt.Sprintf("images left behind: %v", l))
		}
		for _, c := range d.checkpoints() {
			if _, stderr, err := d.ctl("verify", c.Name); err != nil {
				bad = append(bad, fmt.Sprintf("listed checkpoint %s does not verify: %s", c.Name, stderr))
			}
		}
	}
	next = -1
	switch {
	case dstRuns:
		next = 1 - at
	case srcRuns:
		next = at
	default:
		return append(bad, "no copy runs"), -1
	}
	if x := ds[next].workload("mover"); loadStatus(t, x.Ref.PID, x.Ref.LogPath).Hash != hash {
		bad = append(bad, "the running copy's memory changed")
	}
	return bad, next
}
