package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/schedule"
	"github.com/ckptd/ckptd/term"
)

func (c *cli) runCmd() *cobra.Command {
	var name, keys, user, net, workdir, logMax, from, memory, restart string
	var restartFromCkpt, persist bool
	var cpus float64
	var logFiles int32
	var publish, hooks, envs, envFiles []string
	var tty, interactive, detach bool
	var idleAfter time.Duration
	cmd := &cobra.Command{
		Use:   "run --name NAME -- CMD [ARGS...] | run --from CKPT --name NAME",
		Short: "Launch a workload as pid 1 of a new PID namespace, so it can be checkpointed and copied; or start one warm, from a checkpoint",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if from != "" {
				if len(args) > 0 {
					return fmt.Errorf("run --from starts the checkpoint's command as it was: give no command")
				}
				return c.runFrom(cl, from, name, publish)
			}
			if len(args) == 0 {
				return fmt.Errorf("run needs a command after --, or --from CKPT")
			}
			if interactive && !tty {
				return fmt.Errorf("-i needs -t: ckptd gives a workload input only through a terminal")
			}
			if tty && !detach && !term.IsTerminal(int(os.Stdin.Fd())) {
				// Without -d, run stays attached to the session: it would
				// block with no terminal to show it on or detach from.
				return fmt.Errorf("run -t attaches to the session and needs a terminal, and stdin is not one (run -t -d, then '%s')", c.hint("attach", name))
			}
			env, err := workloadEnv(envs, envFiles, tty, os.LookupEnv)
			if err != nil {
				return err
			}
			wd, err := filepath.Abs(workdir) // "": this shell's
			if err != nil {
				return err
			}
			req := &apiv1.RunRequest{Name: name, Args: args, Env: env, Dir: wd, Tty: tty, User: user, Net: net, Publish: publish,
				ScaleToZero: cmd.Flags().Changed("idle-after"), IdleAfterNs: int64(idleAfter), Hooks: hooks, LogMaxFiles: logFiles}
			req.Cpus, req.Restart, req.RestartFromCheckpoint, req.Persist = cpus, restart, restartFromCkpt, persist
			if memory != "" {
				if req.Memory, err = schedule.ParseBytes(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			if logMax != "" {
				if req.LogMaxSize, err = schedule.ParseBytes(logMax); err != nil {
					return fmt.Errorf("--log-max-size: %w", err)
				}
			}
			if size, err := term.SizeOf(int(os.Stdin.Fd())); err == nil && tty {
				req.Rows, req.Cols = uint32(size.Rows), uint32(size.Cols)
			}
			t, err := cl.Run(c.ctx(), req)
			if err != nil {
				return err
			}
			if tty && !detach {
				return c.attach(name, keys, interactive)
			}
			if c.output == "json" {
				return printJSON(t)
			}
			fmt.Printf("%s running as pid %d%s\n", t.GetRef().GetName(), t.GetRef().GetPid(), where(t))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "workload name (required)")
	cmd.Flags().StringVar(&from, "from", "", "start warm: a new workload from this checkpoint (its state, its own network and address; the restored hook re-seeds it)")
	cmd.Flags().StringArrayVarP(&envs, "env", "e", nil, "set NAME=VALUE in the workload's environment, or pass this shell's NAME on (repeatable); nothing else of this shell's environment is sent")
	cmd.Flags().StringArrayVar(&envFiles, "env-file", nil, "read NAME=VALUE lines from a file (# comments; repeatable; --env wins)")
	cmd.Flags().StringVarP(&workdir, "workdir", "w", "", "the workload's working directory (default: this shell's)")
	cmd.Flags().StringVar(&logMax, "log-max-size", "", "copy its log to LOG.1 and empty it past this size, e.g. 10MiB (default: ckptd's log_max_size, 64MiB)")
	cmd.Flags().StringVarP(&memory, "memory", "m", "", "memory it may use, e.g. 512MiB (a cgroup ckptd makes for it; kept across checkpoint and restore)")
	cmd.Flags().StringVar(&restart, "restart", "no", "when it ends on its own (not by kill, stop, a checkpoint or a migration): no, always, or on-failure[:N] (a non-zero exit or a signal, at most N times)")
	cmd.Flags().BoolVar(&restartFromCkpt, "restart-from-checkpoint", false, "with --restart: restore its newest checkpoint instead of starting it again, once it has one")
	cmd.Flags().BoolVar(&persist, "persist", false, "outlive reboots: a shutdown of ckptd checkpoints and stops it, the next start restores it (ckptctl persist NAME off)")
	cmd.Flags().Float64Var(&cpus, "cpus", 0, "CPUs' worth of time it may use, e.g. 0.5 (kept across checkpoint and restore)")
	cmd.Flags().Int32Var(&logFiles, "log-max-files", 0, "files its log keeps, the live one included (default: ckptd's log_max_files, 3)")
	cmd.Flags().StringVar(&net, "net", "", "its network: private (its own namespace on ckptd's bridge network; the default where ckptd has the CNI plugins), host (the host's), or none (loopback only)")
	cmd.Flags().StringSliceVarP(&publish, "publish", "p", nil, "with --net private: publish HOSTPORT:PORT[/tcp|/udp] (repeatable)")
	cmd.Flags().StringArrayVar(&hooks, "hook", nil, "prepare=CMD, sealed=CMD or restored=CMD: run CMD (sh -c) in the workload's namespaces before its checkpoints' freeze (its output is the checkpoint's state), once one is sealed, after a restore (CKPTD_CHECKPOINT, CKPTD_APP_STATE set); repeatable")
	cmd.Flags().DurationVar(&idleAfter, "idle-after", 0, "scale to zero: ckptd holds the published TCP ports, hibernates the workload after this long with no connection (0: only by 'ckptctl hibernate'), and wakes it on the next")
	cmd.Flags().StringVarP(&user, "user", "u", "", "run as UID[:GID] or a user name (root callers; a socket_group caller's workloads run as itself)")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "give the workload a terminal session that outlives ckptd (ckptctl attach)")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "with -t: attach this terminal's keys at once")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "with -t: do not attach")
	cmd.Flags().StringVar(&keys, "detach-keys", term.DefaultDetachKeys, "key sequence that detaches")
	return cmd
}

func (c *cli) psCmd() *cobra.Command {
	var all, quiet, prune bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the targets ckptd knows (running ones; -a for all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.Ps(c.ctx(), &apiv1.PsRequest{All: all, Prune: prune})
			if err != nil {
				return err
			}
			for _, w := range resp.GetWarnings() {
				fmt.Fprintln(os.Stderr, "warning:", w)
			}
			for _, name := range resp.GetPruned() {
				fmt.Fprintln(os.Stderr, "forgot", name)
			}
			if c.output == "json" {
				return printJSONList(resp.GetTargets())
			}
			if quiet {
				for _, t := range resp.GetTargets() {
					fmt.Println(targetName(t.GetRef()))
				}
				return nil
			}
			w := newTable("NAME", "KIND", "PID", "STATUS", "RESTORED FROM", "CREATED", "SCHEDULE", "LAST CHECKPOINT", "COMMAND / IMAGE")
			for _, t := range resp.GetTargets() {
				status := "running"
				pstatus, pending := persistStatus(t)
				switch {
				case pending:
					status = pstatus
				case t.GetHibernated() && t.GetWakeError() != "":
					status = "hibernated, wake failed"
					fmt.Fprintf(os.Stderr, "warning: %s: %s\n", targetName(t.GetRef()), t.GetWakeError())
				case t.GetHibernated():
					status = "hibernated"
				case !t.GetRunning():
					status = t.GetExit()
				case t.GetInDoubt() != "":
					status = "stopped, in doubt (migrate --resolve)"
				case t.GetTerminal() && t.GetTerminalError() != "":
					status = "running, tty lost"
					fmt.Fprintf(os.Stderr, "warning: %s: %s\n", targetName(t.GetRef()), t.GetTerminalError())
				case t.GetTerminal():
					status = fmt.Sprintf("running, tty, %d attached", t.GetAttached())
				}
				from := shortID(t.GetRestoredFrom())
				if from == "" {
					from = "-"
				}
				cmdline := command(t.GetRef().GetCommand())
				if t.GetImage() != "" {
					cmdline = t.GetImage()
				}
				last := "-"
				if t.GetLastCheckpoint() != "" {
					last = fmt.Sprintf("%s (%s)", t.GetLastCheckpoint(), ago(t.GetLastCheckpointUnixNano()))
				}
				sched := "-"
				if s := t.GetSchedule(); s != nil {
					sched = "every " + time.Duration(s.GetEveryNs()).String()
				}
				row(w, targetName(t.GetRef()), t.GetRef().GetKind(), t.GetRef().GetPid(), status, from,
					ago(t.GetCreatedUnixNano()), sched, last, cmdline)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include targets that ended")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the names")
	cmd.Flags().BoolVar(&prune, "prune", false, "first forget the targets that ended, with their logs (their checkpoints stay)")
	return cmd
}

func targetName(r *apiv1.TargetRef) string {
	switch r.GetKind() {
	case "workload":
		return r.GetName()
	case "container":
		return "ctr:" + r.GetName()
	}
	return fmt.Sprintf("pid:%d", r.GetPid())
}

// attachName is what ckptctl attach takes for r: a workload's name, a
// process's PID.
func attachName(r *apiv1.TargetRef) string {
	if r.GetKind() == "workload" {
		return r.GetName()
	}
	return fmt.Sprint(r.GetPid())
}

func (c *cli) logsCmd() *cobra.Command {
	var req apiv1.LogsRequest
	cmd := &cobra.Command{
		Use:   "logs NAME|ctr:NAMESPACE/ID",
		Short: "Print a workload's output, or that of a container ckptd restored",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.TailLines < 0 || req.TailBytes < 0 {
				return fmt.Errorf("--tail and --tail-bytes count lines and bytes: want 0 or more")
			}
			req.Tail = cmd.Flags().Changed("tail") || cmd.Flags().Changed("tail-bytes")
			stream, err := cl.Logs(c.ctx(), &req)
			if err != nil {
				return err
			}
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if _, err := os.Stdout.Write(resp.GetData()); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.Int64VarP(&req.TailLines, "tail", "n", 0, "print only the last N lines (0: none, with -f only what comes)")
	f.Var(sizeFlag{n: &req.TailBytes, max: 1 << 62}, "tail-bytes", "print only the last N bytes (or 64K, 1M...)")
	f.BoolVarP(&req.Follow, "follow", "f", false, "keep printing new output until the workload ends")
	return cmd
}

func (c *cli) killCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill TARGET",
		Short: "Signal a workload (SIGKILL ends its whole PID namespace), or a process or container ckptd restored",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			num, err := parseSignal(sig)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if _, err = cl.Kill(c.ctx(), &apiv1.KillRequest{Target: args[0], Signal: int32(num)}); err != nil {
				return err
			}
			if c.output == "json" {
				return printObject(map[string]any{"target": args[0], "signal": unix.SignalName(num)})
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "SIGKILL", "signal to send: a name (TERM, SIGTERM) or a number; a workload's pid 1 gets only those it handles, but SIGKILL")
	return cmd
}

func (c *cli) stopCmd() *cobra.Command {
	var wait uint
	cmd := &cobra.Command{
		Use:   "stop TARGET",
		Short: "Stop a workload, or a process or container ckptd restored: SIGTERM, then SIGKILL after --time seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.Stop(c.ctx(), &apiv1.StopRequest{Target: args[0], TimeoutNs: int64(time.Duration(wait) * time.Second)})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printObject(map[string]any{"target": args[0], "killed": resp.GetKilled()})
			}
			if resp.GetKilled() {
				fmt.Printf("%s did not end within %ds of SIGTERM: killed\n", args[0], wait)
			}
			return nil
		},
	}
	cmd.Flags().UintVarP(&wait, "time", "t", 10, "seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

// parseSignal reads TERM, SIGTERM or 15.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= 64 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n := unix.SignalNum(name); n != 0 {
		return n, nil
	}
	return 0, fmt.Errorf("signal %q: want a name such as TERM or a number from 1 to 64", s)
}

// where is a workload's place on its own network, if it has one.
func where(t *apiv1.Target) string {
	s := ""
	if ip := t.GetIp(); ip != "" {
		s = " at " + ip
	}
	if ports := t.GetPorts(); len(ports) > 0 {
		s += ", publishing " + strings.Join(ports, " ")
	}
	return s
}

// runFrom starts a new workload from a checkpoint: a copy under its own
// name, as restore --name makes one.
func (c *cli) runFrom(cl apiv1.CkptdClient, from, name string, publish []string) error {
	t, err := cl.Restore(c.ctx(), &apiv1.RestoreRequest{Checkpoint: from, Name: name, Publish: publish})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(t)
	}
	for _, w := range t.GetWarnings() {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	fmt.Printf("%s running as pid %d%s, from %s\n", t.GetRef().GetName(), t.GetRef().GetPid(), where(t), from)
	return nil
}
