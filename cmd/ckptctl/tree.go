package main

import (
	"fmt"
	"sort"
	"strings"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

// renderTree draws checkpoint lineage: each checkpoint under its parent,
// and under a checkpoint the targets restored from it.
func renderTree(cks []*apiv1.Checkpoint, targets []*apiv1.Target) string {
	byID := map[string]bool{}
	for _, ck := range cks {
		byID[ck.GetId()] = true
	}
	children := map[string][]*apiv1.Checkpoint{}
	var roots []*apiv1.Checkpoint
	for _, ck := range cks {
		if p := ck.GetParent(); p != "" && byID[p] {
			children[p] = append(children[p], ck)
		} else {
			roots = append(roots, ck)
		}
	}
	restored := map[string][]*apiv1.Target{}
	for _, t := range targets {
		if t.GetRestoredFrom() != "" {
			restored[t.GetRestoredFrom()] = append(restored[t.GetRestoredFrom()], t)
		}
	}
	var b strings.Builder
	var draw func(ck *apiv1.Checkpoint, prefix, branch string)
	draw = func(ck *apiv1.Checkpoint, prefix, branch string) {
		fmt.Fprintf(&b, "%s%s%s (%s) of %s, %s\n", prefix, branch, ck.GetName(), shortID(ck.GetId()),
			targetName(ck.GetTarget()), humanBytes(ck.GetSize()))
		next := prefix
		switch branch {
		case "├── ":
			next += "│   "
		case "└── ":
			next += "    "
		}
		kids := children[ck.GetId()]
		copies := restored[ck.GetId()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].GetCreatedUnixNano() < kids[j].GetCreatedUnixNano() })
		n := len(kids) + len(copies)
		for i, t := range copies {
			state := "running"
			if !t.GetRunning() {
				state = t.GetExit()
			}
			fmt.Fprintf(&b, "%s%srestored as %s, pid %d (%s)\n", next, connector(i == n-1), targetName(t.GetRef()), t.GetRef().GetPid(), state)
		}
		for i, k := range kids {
			draw(k, next, connector(len(copies)+i == n-1))
		}
	}
	for _, r := range roots {
		draw(r, "", "")
	}
	return b.String()
}

func connector(last bool) string {
	if last {
		return "└── "
	}
	return "├── "
}
