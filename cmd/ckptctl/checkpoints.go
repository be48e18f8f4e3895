package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) createCmd() *cobra.Command {
	var name, group string
	var o apiv1.Options
	var prepareTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "create TARGET | --group NAME TARGET...",
		Short: "Checkpoint a target (a PID, a workload name, or a container ctr:NAMESPACE/ID), or several at one instant as a group",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if group != "" {
				return c.createGroup(group, args, &o, prepareTimeout)
			}
			if len(args) > 1 {
				return fmt.Errorf("create takes one target; several are checkpointed together with --group NAME")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			var ck *apiv1.Checkpoint
			err = carriedThrough(c.ctx(), "ckptd finishes this checkpoint or rolls it back whole on its own",
				fmt.Sprintf("stopped waiting; ckptd finishes or rolls back the checkpoint on its own ('%s' shows whether it was made)", c.hint("ls", "--target", args[0])),
				func(ctx context.Context) (err error) {
					ck, err = cl.Create(ctx, &apiv1.CreateRequest{Target: args[0], Name: name, Options: &o, PrepareTimeoutNs: int64(prepareTimeout)})
					return err
				})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(ck)
			}
			size := humanBytes(ck.GetSize())
			if shared := ck.GetIncremental().GetSharedBytes(); shared > 0 {
				size = fmt.Sprintf("%s stored of %s", size, humanBytes(ck.GetSize()+shared))
			}
			frozen := fmt.Sprintf("frozen %.1f ms", float64(ck.GetStats().GetFrozenTime())/1000)
			if sync := ck.GetStats().GetCommitSync(); sync > 0 {
				frozen += fmt.Sprintf(", %.1f ms of it for the disk", float64(sync)/1000)
			}
			fmt.Printf("%s %s (%s, %s)%s\n", ck.GetName(), shortID(ck.GetId()), size, frozen, sealedAfter(ck))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "checkpoint name (default TARGET-N)")
	f.StringVar(&group, "group", "", "checkpoint every TARGET at one instant as the group NAME: complete only once all are saved")
	f.BoolVar(&o.LeaveRunning, "leave-running", false, "keep the target running after the checkpoint")
	f.BoolVar(&o.TcpEstablished, "tcp-established", false, "checkpoint established TCP connections")
	f.BoolVar(&o.FileLocks, "file-locks", false, "checkpoint file locks")
	f.BoolVar(&o.ExtUnixSk, "ext-unix-sk", false, "allow unix sockets connected outside the tree")
	f.BoolVar(&o.ShellJob, "shell-job", false, "the target is a shell job (shares a session and terminal)")
	f.BoolVar(&o.LinkRemap, "link-remap", false, "dump files that were unlinked while open (CRIU --link-remap)")
	f.Var(&uint32Size{p: &o.GhostLimit}, "ghost-limit", "largest deleted open file to keep in the images, in bytes or as CRIU takes it (8M) (default CRIU's 1 MiB)")
	f.StringVar(&o.CriuConfig, "criu-config", "", "CRIU configuration file for this dump and its restores (CRIU's option syntax)")
	f.DurationVar(&prepareTimeout, "prepare-timeout", 0, "how long a workload listening on $CKPTD_NOTIFY_SOCKET may take to answer prepare before the checkpoint fails (default 10s)")
	return cmd
}

func (c *cli) lsCmd() *cobra.Command {
	var target string
	var tree, all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List checkpoints",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.List(c.ctx(), &apiv1.ListRequest{Target: target, Quarantined: all})
			if err != nil {
				return err
			}
			if c.output == "json" && all {
				return printJSON(resp)
			}
			if c.output == "json" {
				return printJSONList(resp.GetCheckpoints())
			}
			if tree {
				ps, err := cl.Ps(c.ctx(), &apiv1.PsRequest{All: true})
				if err != nil {
					return err
				}
				fmt.Print(renderTree(resp.GetCheckpoints(), ps.GetTargets()))
				return nil
			}
			w := newTable("NAME", "ID", "TARGET", "PARENT", "CREATED", "SIZE", "FROZEN", "STATE")
			for _, ck := range resp.GetCheckpoints() {
				row(w, ck.GetName(), shortID(ck.GetId()), targetName(ck.GetTarget()), or(shortID(ck.GetParent()), "-"),
					ago(ck.GetCreatedUnixNano()), sizeOf(ck), fmt.Sprintf("%.1fms", float64(ck.GetStats().GetFrozenTime())/1000), ck.GetState())
			}
			for _, q := range resp.GetQuarantined() {
				ck := q.GetCheckpoint()
				name, target := "?", "?"
				if ck != nil {
					name, target = ck.GetName(), targetName(ck.GetTarget())
				}
				row(w, name, shortID(q.GetId()), target, or(shortID(ck.GetParent()), "-"),
					ago(ck.GetCreatedUnixNano()), humanBytes(ck.GetSize()), "-", "QUARANTINED")
			}
			if err := w.Flush(); err != nil {
				return err
			}
			return printGroups(resp.GetGroups())
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "only checkpoints of this target (PID or workload name)")
	cmd.Flags().BoolVar(&tree, "tree", false, "show lineage: checkpoints, their children and restored copies")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list quarantined checkpoints (see: ckptctl quarantine ls)")
	return cmd
}

func (c *cli) rmCmd() *cobra.Command {
	var recursive, relink, all bool
	cmd := &cobra.Command{
		Use:   "rm CHECKPOINT... | --all",
		Short: "Remove checkpoints (by name, id or id prefix); prints the names removed",
		RunE: func(cmd *cobra.Command, args []string) error {
			if all != (len(args) == 0) {
				return fmt.Errorf("name the checkpoints to remove, or give --all alone")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			listed, err := cl.List(c.ctx(), &apiv1.ListRequest{})
			if err != nil {
				return err
			}
			names := map[string]string{}
			for _, g := range listed.GetGroups() {
				for _, m := range g.GetMembers() {
					names[m.GetCheckpoint()] = m.GetCheckpointName() + " (group " + g.GetName() + ")"
				}
				if all {
					args = append(args, g.GetId())
				}
			}
			for _, ck := range listed.GetCheckpoints() {
				if ck.GetGroup() != "" {
					continue // removed with its group
				}
				names[ck.GetId()] = ck.GetName()
				if all {
					args = append(args, ck.GetId())
				}
			}
			if len(args) == 0 {
				return nil // --all of nothing
			}
			resp, err := cl.Remove(c.ctx(), &apiv1.RemoveRequest{Refs: args, Recursive: recursive || all, Relink: relink})
			if err != nil {
				return err
			}
			type removed struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			}
			var out []removed
			for _, id := range resp.GetRemoved() {
				out = append(out, removed{id, or(names[id], id)})
			}
			if c.output == "json" {
				return printObject(map[string]any{"removed": out})
			}
			for _, r := range out {
				fmt.Println(r.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every checkpoint (quarantined ones stay)")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "also remove the checkpoints that descend from these")
	cmd.Flags().BoolVar(&relink, "relink", false, "keep the checkpoints that descend from these: children take the pages they read from them")
	return cmd
}

func (c *cli) restoreCmd() *cobra.Command {
	var name string
	var latest, tcpClose bool
	var publish []string
	cmd := &cobra.Command{
		Use:   "restore CHECKPOINT | --latest TARGET",
		Short: "Restore a checkpoint, or a target's newest sealed one; --name restores a workload or container as a new copy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.Restore(c.ctx(), &apiv1.RestoreRequest{Checkpoint: args[0], Name: name, Latest: latest, TcpClose: tcpClose, Publish: publish})
			if status.Code(err) == codes.NotFound && !latest && !tcpClose && len(publish) == 0 {
				if done, gerr := c.restoreGroup(args[0], name); done {
					return gerr
				}
			}
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(t)
			}
			for _, w := range t.GetWarnings() {
				fmt.Fprintln(os.Stderr, "warning:", w)
			}
			fmt.Printf("%s restored as pid %d%s\n", targetName(t.GetRef()), t.GetRef().GetPid(), where(t))
			if t.GetTerminal() {
				fmt.Printf("on a new terminal: %s\n", c.hint("attach", attachName(t.GetRef())))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "restore as a new workload, or a new container (ID or ctr:NAMESPACE/ID), with this name")
	cmd.Flags().BoolVar(&latest, "latest", false, "the argument is a target: restore the sealed checkpoint of it that ckptd took, imported, pulled or received last")
	cmd.Flags().BoolVar(&tcpClose, "tcp-close", false, "restore established TCP connections closed, for peers that are gone (CRIU's tcp-close)")
	cmd.Flags().StringSliceVarP(&publish, "publish", "p", nil, "a workload in its own network: publish HOSTPORT:PORT[/tcp|/udp] in place of its original's ports (a copy publishes none unless asked; repeatable)")
	return cmd
}

func (c *cli) inspectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CHECKPOINT",
		Short: "Show a checkpoint: metadata, CRIU stats, processes, memory, files, sockets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			in, err := cl.Inspect(c.ctx(), &apiv1.InspectRequest{Checkpoint: args[0]})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(in)
			}
			if g := in.GetGroup(); g != nil {
				printGroup(g)
				return nil
			}
			printInspection(in)
			return nil
		},
	}
}

func printInspection(in *apiv1.InspectResponse) {
	ck := in.GetCheckpoint()
	st := ck.GetStats()
	parent := ck.GetParent()
	if parent == "" {
		parent = "-"
	}
	fmt.Printf("Name:      %s\nID:        %s\nTarget:    %s (%s)\nParent:    %s\nChildren:  %s\nCreated:   %s\n",
		ck.GetName(), ck.GetId(), targetName(ck.GetTarget()), command(ck.GetTarget().GetCommand()), parent,
		or(strings.Join(in.GetChildren(), ", "), "-"), ago(ck.GetCreatedUnixNano()))
	fmt.Printf("State:     %s%s\n", ck.GetState(), sealedAfter(ck))
	if st := ck.GetAppState(); len(st) > 0 {
		fmt.Printf("App state: %d bytes from its answer to prepare: %s\n", len(st), clipQuote(st))
	}
	if u := ck.GetRunsAs(); u != "" {
		fmt.Printf("Runs as:   %s (from outside, as its images say)\n", u)
	}
	if o := ck.GetTarget().GetOwner(); o != 0 {
		fmt.Printf("Owner:     uid %d\n", o)
	}
	for _, d := range ck.GetDropped() {
		fmt.Printf("Dropped:   %s (from outside; a restore goes without it)\n", d)
	}
	fmt.Printf("Host:      %s, kernel %s, CRIU %s\nCPU:       %s\nSize:      %s in %d files\n",
		ck.GetHost(), ck.GetKernel(), ck.GetCriuVersion(), ck.GetCpuModel(), humanBytes(ck.GetSize()), len(ck.GetFiles()))
	if inc := ck.GetIncremental(); inc != nil {
		fmt.Printf("Stored:    %s of %s: the rest is read from parent %s (chain of %d)\n", humanBytes(ck.GetSize()),
			humanBytes(ck.GetSize()+inc.GetSharedBytes()), shortID(inc.GetParent()), inc.GetDepth())
	}
	if p := in.GetChainProblem(); p != "" {
		fmt.Printf("Chain:     BROKEN: %s\n", p)
	}
	if m := ck.GetMigration(); m != nil {
		fmt.Printf("Migrated:  from %s, running here since %s\n", m.GetPeer(), ago(m.GetReceivedUnixNano()))
	}
	if im := ck.GetImported(); im != nil {
		fmt.Printf("Imported:  from %s (id %s there), %s\n", im.GetSource(), im.GetOriginalId(), ago(im.GetTimeUnixNano()))
	}
	if ck.GetScheduled() {
		fmt.Println("Scheduled: taken by a schedule; its retention may remove it")
	}
	if ci := ck.GetContainer(); ci != nil {
		named := ci.GetImageDigest()
		if named == "" {
			named = "config " + ci.GetImageId()
		}
		fmt.Printf("Container: ctr:%s/%s, image %s (%s), snapshotter %s, runtime %s\n",
			ci.GetNamespace(), ci.GetId(), ci.GetImage(), named, ci.GetSnapshotter(), ci.GetRuntime())
		if e := ci.GetEngine(); e != "" {
			fmt.Printf("Taken by: %s (imported; restores into containerd)\n", e)
		}
	}
	fmt.Printf("CRIU stats: freezing_time %dus, frozen_time %dus, memdump_time %dus, memwrite_time %dus, pages_scanned %d, pages_written %d\n\n",
		st.GetFreezingTime(), st.GetFrozenTime(), st.GetMemdumpTime(), st.GetMemwriteTime(), st.GetPagesScanned(), st.GetPagesWritten())
	w := newTable("PID", "PPID", "COMM", "MEMORY", "COMMAND")
	for _, p := range in.GetProcesses() {
		row(w, p.GetPid(), p.GetPpid(), p.GetComm(), humanBytes(p.GetMemoryBytes()), strings.Join(p.GetCommand(), " "))
	}
	w.Flush()
	fmt.Println()
	w = newTable("PID", "FD", "TYPE", "PATH / ADDRESS")
	for _, p := range in.GetProcesses() {
		for _, f := range p.GetFiles() {
			row(w, p.GetPid(), f.GetFd(), f.GetType(), f.GetPath())
		}
		for _, s := range p.GetSockets() {
			row(w, p.GetPid(), s.GetFd(), "socket "+s.GetType(), strings.TrimSpace(s.GetState()+" "+s.GetSrc()+" "+s.GetDst()))
		}
	}
	w.Flush()
	if len(in.GetNeeds()) > 0 {
		fmt.Println()
		w = newTable("RESTORE NEEDS", "SIZE", "HERE")
		for _, n := range in.GetNeeds() {
			size := "-"
			if n.GetSize() >= 0 {
				size = fmt.Sprint(n.GetSize())
			}
			row(w, n.GetPath(), size, or(n.GetProblem(), "ok"))
		}
		w.Flush()
	}
}

// sealedAfter says how long a checkpoint took to be hashed and on disk
// after it was taken, when that happened after its target was released.
func sealedAfter(ck *apiv1.Checkpoint) string {
	if !ck.GetOptions().GetLeaveRunning() || ck.GetSealedUnixNano() == 0 {
		return ""
	}
	return fmt.Sprintf(" (sealed %.1f s after it was taken)", float64(ck.GetSealedUnixNano()-ck.GetCreatedUnixNano())/1e9)
}

// sizeOf is a checkpoint's size, unknown until it is sealed.
func sizeOf(ck *apiv1.Checkpoint) string {
	if ck.GetState() == "sealing" {
		return "-"
	}
	return humanBytes(ck.GetSize())
}

// clipQuote is an application's state as a quoted string, cut to 60
// bytes: it is the application's, not ckptd's, and may be binary.
func clipQuote(b []byte) string {
	if len(b) > 60 {
		return strconv.Quote(string(b[:60])) + "..."
	}
	return strconv.Quote(string(b))
}
