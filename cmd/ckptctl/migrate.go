package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) migrateCmd() *cobra.Command {
	var req apiv1.MigrateRequest
	var o apiv1.Options
	var timeout, peerTimeout time.Duration
	var precopy string
	var rounds int
	var resolve string
	var resume, discard bool
	cmd := &cobra.Command{
		Use:   "migrate TARGET --to HOST:PORT | --resolve NAME --resume|--discard",
		Short: "Move a running target (workload, PID or ctr:NAMESPACE/ID) to the ckptd at HOST:PORT",
		Long: `Move a running target to another ckptd. The destination checks first that it
can take the target (CRIU, CPU, kernel features, disk, memory, files, base
image); only then is the target frozen and its pages streamed to the
destination's CRIU page server. The source is stopped once the destination
runs the target; if anything fails before that, the source resumes.

The destination keeps the restored tree stopped until the source confirms
its own copy is gone. If that word never comes, the copy stays stopped and
'ps' shows it in doubt: once you have looked at the source, settle it with
--resolve NAME --resume (the source's copy is gone) or --discard (it runs).

--lazy is post-copy: the destination runs the target as soon as everything
but its memory has moved, and fetches the pages from the frozen source, on
demand and in the background. Downtime no longer grows with memory. If the
link breaks before every page has moved, the destination's copy is ended
and the source resumes from the moment it froze; if the source host dies
first, the workload is lost.`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if resolve != "" {
				return c.resolveMigration(resolve, resume, discard, args)
			}
			if len(args) != 1 {
				return errors.New("give the target to migrate")
			}
			if req.To == "" {
				return errors.New("--to HOST:PORT is required")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if peerTimeout != 0 && peerTimeout < time.Second {
				return errors.New("--peer-timeout: want 1s or more")
			}
			req.Target, req.Options, req.RestoreTimeoutMs = args[0], &o, timeout.Milliseconds()
			req.PeerTimeoutMs, req.PrecopyRounds = peerTimeout.Milliseconds(), int32(rounds)
			switch precopy {
			case "auto":
			case "on", "true":
				req.Precopy = apiv1.Precopy_PRECOPY_ON
			case "off", "false":
				req.Precopy = apiv1.Precopy_PRECOPY_OFF
			default:
				return fmt.Errorf("--precopy %q: want on, off or auto", precopy)
			}
			if req.Lazy {
				if req.KeepSource || req.Precopy == apiv1.Precopy_PRECOPY_ON {
					return errors.New("--lazy moves the target and excludes --keep-source and --precopy")
				}
			}
			ctx, stop := interruptible(c.ctx(), "ckptd ends the migration: before its commit the source resumes and the destination discards what it received; after it, the migration completes")
			defer stop()
			stream, err := cl.Migrate(ctx, &req)
			if err != nil {
				return err
			}
			bar := newProgressBar(os.Stderr)
			warned := !req.Lazy
			for {
				ev, err := stream.Recv()
				if err == nil && !warned {
					// Said once ckptd took the request, before anything freezes.
					fmt.Fprintln(os.Stderr, "post-copy: if the source dies before every page has moved, the workload is lost")
					warned = true
				}
				if errors.Is(err, io.EOF) {
					return errors.New("ckptd ended the migration without a result")
				}
				if err != nil {
					bar.clear()
					return err
				}
				if p := ev.GetProgress(); p != nil {
					bar.show(p)
					continue
				}
				bar.clear()
				return c.printMigrated(ev.GetResult())
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.To, "to", "", "the destination ckptd's peer address (its peer_listen), HOST:PORT")
	f.StringVar(&req.Name, "name", "", "the target's name on the destination (default: the same)")
	f.BoolVar(&req.KeepSource, "keep-source", false, "leave the source running: the destination gets a copy")
	f.BoolVar(&req.Lazy, "lazy", false, "post-copy: run at once on the destination, then move the memory; the workload is lost if the source dies first (see 'ckptctl check')")
	f.DurationVar(&timeout, "restore-timeout", 0, "how long the frozen source waits for the destination to run it (default 5m)")
	f.StringVar(&precopy, "precopy", "auto", "send the memory in live rounds first, so that only the last difference crosses while frozen: on, off, or auto (on above 1 GiB)")
	f.Lookup("precopy").NoOptDefVal = "on"
	f.IntVar(&rounds, "precopy-rounds", 0, "at most this many pre-copy rounds, the frozen one included (default 4); they stop early when the difference stops shrinking")
	f.DurationVar(&peerTimeout, "peer-timeout", 0, "end the migration when the destination makes no progress for this long (default: ckptd's peer_timeout, 30s)")
	f.BoolVar(&o.TcpEstablished, "tcp-established", false, "migrate established TCP connections")
	f.BoolVar(&o.FileLocks, "file-locks", false, "migrate file locks")
	f.BoolVar(&o.ExtUnixSk, "ext-unix-sk", false, "allow unix sockets connected outside the tree")
	f.BoolVar(&o.ShellJob, "shell-job", false, "the target is a shell job (shares a session and terminal)")
	f.StringVar(&resolve, "resolve", "", "settle a migrated target kept stopped in doubt (with --resume or --discard)")
	f.BoolVar(&resume, "resume", false, "with --resolve: run it here (the source's copy is gone)")
	f.BoolVar(&discard, "discard", false, "with --resolve: kill it here (the source's copy runs)")
	return cmd
}

func (c *cli) resolveMigration(name string, resume, discard bool, args []string) error {
	if len(args) > 0 || resume == discard {
		return errors.New("--resolve NAME takes exactly one of --resume or --discard, and no target")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	t, err := cl.ResolveMigration(c.ctx(), &apiv1.ResolveMigrationRequest{Target: name, Resume: resume})
	if err != nil {
		return err
	}
	if c.output == "json" {
		return printJSON(t)
	}
	if resume {
		fmt.Printf("%s resumed (pid %d)\n", name, t.GetRef().GetPid())
	} else {
		fmt.Printf("%s discarded\n", name)
	}
	return nil
}

func (c *cli) printMigrated(r *apiv1.MigrateResult) error {
	if c.output == "json" {
		return printJSON(r)
	}
	down := time.Duration(r.GetDowntimeNs())
	total := time.Duration(r.GetTotalNs())
	fmt.Printf("migrated to %s as %s (pid %d)\n", r.GetDestination(), r.GetName(), r.GetPid())
	fmt.Printf("downtime %.3f s, total %.3f s, %s moved", down.Seconds(), total.Seconds(), humanBytes(r.GetBytes()))
	if s := r.GetStats(); s != nil {
		fmt.Printf(", CRIU: frozen %.1f ms, memdump %.1f ms, %d pages written",
			float64(s.GetFrozenTime())/1000, float64(s.GetMemdumpTime())/1000, s.GetPagesWritten())
	}
	fmt.Println()
	for _, rd := range r.GetRounds() {
		what := "live"
		if rd.GetFrozen() {
			what = "frozen"
		}
		fmt.Printf("pre-copy round %d (%s): %s in %.3f s\n", rd.GetN(), what, humanBytes(rd.GetBytes()), time.Duration(rd.GetTookNs()).Seconds())
	}
	if ps := r.GetPhases(); len(ps) > 0 {
		parts := make([]string, len(ps))
		for i, p := range ps {
			parts[i] = fmt.Sprintf("%s %.3f s", p.GetName(), time.Duration(p.GetDurationNs()).Seconds())
		}
		fmt.Printf("downtime phases: %s\n", strings.Join(parts, ", "))
	}
	state := "stopped"
	if !r.GetSourceStopped() {
		state = "left running (--keep-source)"
	}
	if r.GetCheckpoint() == "" {
		fmt.Printf("source %s; every page moved after the downtime (post-copy), straight into memory: the destination keeps no checkpoint\n", state)
	} else {
		fmt.Printf("source %s; the destination keeps checkpoint %s\n", state, shortID(r.GetCheckpoint()))
	}
	for _, w := range r.GetWarnings() {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	return nil
}

// progressBar draws one self-overwriting line on a terminal, and a line
// per phase elsewhere (logs, tests).
type progressBar struct {
	w     io.Writer
	tty   bool
	start time.Time
	phase string
	drawn bool
}

func newProgressBar(f *os.File) *progressBar {
	return &progressBar{w: f, tty: isTerminal(f), start: time.Now()}
}

func (b *progressBar) show(p *apiv1.MigrateProgress) {
	if !b.tty {
		return
	}
	rate := float64(p.GetBytes()) / time.Since(b.start).Seconds()
	line := fmt.Sprintf("%-9s %s %9s", p.GetPhase(), bar(p.GetBytes(), p.GetTotal(), 30), humanBytes(p.GetBytes()))
	if p.GetBytes() > 0 {
		line += fmt.Sprintf("  %s/s", humanBytes(int64(rate)))
	}
	fmt.Fprintf(b.w, "\r\033[K%s", line)
	b.drawn = true
}

func (b *progressBar) clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// bar renders done of total as [#####.....]; the total is an estimate
// (resident memory), so it is capped.
func bar(done, total int64, width int) string {
	n := 0
	if total > 0 {
		n = int(min(done*int64(width)/total, int64(width)))
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
