package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"time"
)

var (
	groupOn  = flag.Bool("group", true, "benchmark a group checkpoint of 4 workloads: how long its members are held, against the slowest of the four checkpointed alone")
	groupMiB = flag.Int("group-mib", 256, "memory of each group member, in MiB")
)

const groupSize = 4

// benchGroup checkpoints four memload workloads as a group that stops
// them, and four others one at a time, in turns: the group holds its
// members from the freeze until it is durable; each one alone is held
// for CRIU's frozen time, which includes its own wait for the disk.
func benchGroup(work string) {
	memload := buildMemload(work)
	d := startDaemon(work, "group", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	var group, alone []sample
	for i := -1; i < *rounds; i++ { // round -1 warms the page cache and both paths
		names := d.runMembers(memload, "g", i)
		var g struct {
			Name   string `json:"name"`
			Frozen int64  `json:"frozen_ns,string"`
		}
		check(json.Unmarshal([]byte(d.ctl(append([]string{"create", "-o", "json", "--group", fmt.Sprintf("grp%d", i+1)}, names...)...)), &g))
		d.ctl("rm", g.Name)
		names = d.runMembers(memload, "s", i)
		var slowest time.Duration
		for _, n := range names {
			c := createJSON(d, n)
			slowest = max(slowest, time.Duration(c.Stats.FrozenTime)*time.Microsecond)
			d.ctl("rm", c.Name)
		}
		if i >= 0 {
			group = append(group, sample{wall: time.Duration(g.Frozen)})
			alone = append(alone, sample{wall: slowest})
		}
	}
	wall := func(s sample) time.Duration { return s.wall }
	_, gMid, _ := spread(group, wall)
	_, aMid, _ := spread(alone, wall)
	fmt.Printf("\ngroup checkpoint, %d members of %d MiB each, stopped: time held, %d rounds, interleaved\n\n", groupSize, *groupMiB, *rounds)
	fmt.Printf("%-28s %24s %24s %8s\n", "held (ms)", "slowest alone min/med/max", "group min/med/max", "ratio")
	fmt.Printf("%-28s %24s %24s %8s\n", fmt.Sprintf("%d x memload %d MiB", groupSize, *groupMiB), mmmWall(alone), mmmWall(group), ratio(gMid, aMid))
	fmt.Println("(goal: the group's members held at most 1.2x as long as the slowest of them checkpointed alone)")
}

// runMembers starts the group's workloads, in the host's network as the
// raw tools' are elsewhere, and waits until their memory is filled.
func (d *daemon) runMembers(memload, prefix string, round int) []string {
	var names []string
	for m := range groupSize {
		name := fmt.Sprintf("%s%d-%d", prefix, round+1, m)
		d.ctl("run", "--name", name, "--net", "host", "--", memload, "--mib", strconv.Itoa(*groupMiB))
		names = append(names, name)
	}
	for _, name := range names {
		waitReady(filepath.Join(d.root, "workloads", name, "output.log"))
	}
	return names
}
