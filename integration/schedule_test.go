package integration

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

type scheduleStatus struct {
	Key            string `json:"key"`
	Runs           int    `json:"runs"`
	Skipped        int    `json:"skipped"`
	Failures       int    `json:"failures"`
	LastCheckpoint string `json:"last_checkpoint"`
}

func (d *daemon) schedules() []scheduleStatus {
	d.t.Helper()
	var out []scheduleStatus
	if err := json.Unmarshal([]byte(d.must("schedule", "ls", "-o", "json")), &out); err != nil {
		d.t.Fatalf("schedule ls -o json: %v", err)
	}
	return out
}

// scheduled lists the checkpoints a schedule took, with all checkpoints.
func (d *daemon) scheduled() (sched, all []checkpoint) {
	d.t.Helper()
	var cs []struct {
		checkpoint
		Scheduled bool `json:"scheduled"`
	}
	if err := json.Unmarshal([]byte(d.must("ls", "-o", "json")), &cs); err != nil {
		d.t.Fatalf("ls -o json: %v", err)
	}
	for _, c := range cs {
		all = append(all, c.checkpoint)
		if c.Scheduled {
			sched = append(sched, c.checkpoint)
		}
	}
	return sched, all
}

// waitRuns waits until the schedule of key has run at least n times.
func waitRuns(t *testing.T, d *daemon, key string, n int) scheduleStatus {
	t.Helper()
	var got scheduleStatus
	waitFor(t, key+" scheduled runs", func() bool {
		for _, s := range d.schedules() {
			if s.Key == key {
				got = s
			}
		}
		return got.Runs >= n
	})
	return got
}

// waitScheduledCount waits until exactly n scheduled checkpoints are
// listed and stay so.
func waitScheduledCount(t *testing.T, d *daemon, n int) []checkpoint {
	t.Helper()
	var sched []checkpoint
	waitFor(t, "retention", func() bool { sched, _ = d.scheduled(); return len(sched) == n })
	time.Sleep(1500 * time.Millisecond)
	if sched, _ = d.scheduled(); len(sched) != n {
		t.Fatalf("%d scheduled checkpoints, want %d", len(sched), n)
	}
	return sched
}

// TestScheduleAndRetention: a schedule fires, retention keeps exactly the
// newest --keep-last (never a checkpoint taken by hand) with lineage
// intact, the schedule and its counts survive a restart, ps shows it, and
// restore --latest restores the newest.
func TestScheduleAndRetention(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("sjob", 16)
	manual := d.create("sjob", "--leave-running", "--name", "by-hand")
	d.mustFailAll(t, []failCase{
		{want: "not found", args: []string{"schedule", "nosuchjob", "--every", "1s"}},
		{want: "shorter than", args: []string{"schedule", "sjob", "--every", "10ms"}},
		{want: "size", args: []string{"schedule", "sjob", "--every", "1s", "--max-bytes", "lots"}},
		{want: "not found", args: []string{"schedule", "rm", "sjob"}},
		{want: "no sealed checkpoint", args: []string{"restore", "--latest", "12345678"}},
	})

	d.must("schedule", "sjob", "--every", "1s", "--keep-last", "2")
	waitRuns(t, d, "workload/sjob", 4)
	if out := d.must("ps"); !strings.Contains(out, "every 1s") {
		t.Errorf("ps does not show the schedule:\n%s", out)
	}
	d.must("schedule", "rm", "sjob")
	sched := waitScheduledCount(t, d, 2)
	_, all := d.scheduled()
	ids := map[string]bool{}
	for _, c := range all {
		ids[c.ID] = true
	}
	if !ids[manual.ID] {
		t.Fatal("retention removed the checkpoint taken by hand")
	}
	for _, c := range all {
		if c.Parent != "" && !ids[c.Parent] {
			t.Errorf("checkpoint %s names a removed parent %s", c.Name, c.Parent)
		}
	}

	// Across a restart: the policy and its counts stay, and it fires on.
	d.must("schedule", "sjob", "--every", "1s", "--keep-last", "1")
	before := waitRuns(t, d, "workload/sjob", 5)
	d.stop()
	d.start()
	if s := d.schedules(); len(s) != 1 || s[0].Runs < before.Runs {
		t.Fatalf("after a restart: %+v, want the schedule with at least %d runs", s, before.Runs)
	}
	waitRuns(t, d, "workload/sjob", before.Runs+2)
	d.must("schedule", "rm", "sjob")
	sched = waitScheduledCount(t, d, 1)

	d.must("restore", "--latest", "sjob", "--name", "sjcopy")
	for _, tg := range d.ps() {
		if tg.Ref.Name == "sjcopy" && tg.RestoredFrom != sched[0].ID {
			t.Errorf("restore --latest restored %s, want the newest %s", tg.RestoredFrom, sched[0].ID)
		}
	}
}

// TestScheduleMaxBytes: --max-bytes removes the oldest scheduled
// checkpoints until the rest fit, never the newest.
func TestScheduleMaxBytes(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("mjob", 16)
	// Less than one whole 16 MiB checkpoint: the older ones go, their
	// pages folded into the newest, which stays and stands alone.
	d.must("schedule", "mjob", "--every", "1s", "--max-bytes", "8MiB")
	waitRuns(t, d, "workload/mjob", 3)
	d.must("schedule", "rm", "mjob")
	sched := waitScheduledCount(t, d, 1)
	_, all := d.scheduled()
	if !slices.ContainsFunc(all, func(c checkpoint) bool { return c.ID == sched[0].ID }) {
		t.Fatal("the newest scheduled checkpoint is gone")
	}
	d.must("verify", sched[0].Name)
	if c := d.checkpoint(sched[0].ID); c.Incremental != nil || c.Size < 16<<20 {
		t.Errorf("the newest after its parents were removed: %d bytes, reads from %+v; want it whole", c.Size, c.Incremental)
	}
	w := d.workload("mjob")
	want := loadStatus(t, w.Ref.PID, w.Ref.LogPath).Hash
	if h := restoredHash(t, d, sched[0].Name, "mcopy"); h != want {
		t.Errorf("restore of the newest: memory %s, want %s", h, want)
	}
}
