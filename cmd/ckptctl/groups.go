package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

// createGroup checkpoints targets at one instant as the group name.
func (c *cli) createGroup(name string, targets []string, o *apiv1.Options, prepareTimeout time.Duration) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var g *apiv1.Group
	err = carriedThrough(c.ctx(), "ckptd finishes this group or rolls it back whole on its own",
		fmt.Sprintf("stopped waiting; ckptd finishes or rolls back the group on its own ('%s' shows whether it was made)", c.hint("ls")),
		func(ctx context.Context) (err error) {
			g, err = cl.CreateGroup(ctx, &apiv1.CreateGroupRequest{Name: name, Targets: targets, Options: o, PrepareTimeoutNs: int64(prepareTimeout)})
			return err
		})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(g)
	}
	fmt.Printf("group %s %s (frozen %.1f ms): %s\n", g.GetName(), shortID(g.GetId()), float64(g.GetFrozenNs())/1e6, memberList(g))
	return nil
}

// restoreGroup restores the group name, if there is one (done is false
// when there is none).
func (c *cli) restoreGroup(name, suffix string) (done bool, err error) {
	cl, err := c.client()
	if err != nil {
		return true, err
	}
	resp, err := cl.RestoreGroup(c.ctx(), &apiv1.RestoreGroupRequest{Group: name, Name: suffix})
	if status.Code(err) == codes.NotFound && strings.HasPrefix(status.Convert(err).Message(), fmt.Sprintf("group %q", name)) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	if c.output == "json" {
		return true, printJSON(resp)
	}
	for _, t := range resp.GetTargets() {
		for _, w := range t.GetWarnings() {
			fmt.Fprintf(os.Stderr, "warning: %s: %s\n", targetName(t.GetRef()), w)
		}
		fmt.Printf("%s restored as pid %d%s\n", targetName(t.GetRef()), t.GetRef().GetPid(), where(t))
	}
	return true, nil
}

func memberList(g *apiv1.Group) string {
	var ms []string
	for _, m := range g.GetMembers() {
		t := targetName(m.GetTarget())
		if h := m.GetHost(); h != "" {
			t = h + ":" + t
		}
		ms = append(ms, fmt.Sprintf("%s (%s)", m.GetCheckpointName(), t))
	}
	return strings.Join(ms, ", ")
}

func printGroups(gs []*apiv1.Group) error {
	if len(gs) == 0 {
		return nil
	}
	fmt.Println()
	w := newTable("GROUP", "ID", "CREATED", "MEMBERS")
	for _, g := range gs {
		row(w, g.GetName(), shortID(g.GetId()), ago(g.GetCreatedUnixNano()), memberList(g))
	}
	return w.Flush()
}

func printGroup(g *apiv1.Group) {
	fmt.Printf("Group:    %s\nID:       %s\nCreated:  %s\nFrozen:   %.1f ms\n", g.GetName(), g.GetId(), time.Unix(0, g.GetCreatedUnixNano()).Format(time.RFC3339), float64(g.GetFrozenNs())/1e6)
	fmt.Println("Members (restored in this order):")
	for _, m := range g.GetMembers() {
		where := ""
		if h := m.GetHost(); h != "" {
			where = " on " + h
		}
		fmt.Printf("  %s  %s  %s%s\n", m.GetCheckpointName(), shortID(m.GetCheckpoint()), targetName(m.GetTarget()), where)
	}
}
