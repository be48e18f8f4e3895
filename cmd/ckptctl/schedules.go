package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/schedule"
)

func (c *cli) scheduleCmd() *cobra.Command {
	var every time.Duration
	var maxBytes, group string
	var r apiv1.SetScheduleRequest
	cmd := &cobra.Command{
		Use:   "schedule TARGET --every D | --group NAME --every D TARGET...",
		Short: "Checkpoint a target on a schedule (--leave-running) and prune by a retention policy",
		Long: "Checkpoint a target every D while it keeps running, and remove the scheduled checkpoints the\n" +
			"policy no longer keeps: --keep-last N newest, the newest of each of --keep-hourly N hours and\n" +
			"--keep-daily N days, then the oldest until the rest fit --max-bytes. The newest sealed checkpoint\n" +
			"and checkpoints taken by hand are never removed. Without a keep option every checkpoint is kept.\n" +
			"With --group NAME, the TARGETs are checkpointed together at one instant, as groups NAME-1, NAME-2...,\n" +
			"and the policy keeps and removes whole groups; 'schedule rm NAME' ends it.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if maxBytes != "" {
				if r.MaxBytes, err = schedule.ParseBytes(maxBytes); err != nil {
					return err
				}
			}
			r.Target, r.EveryNs = args[0], every.Nanoseconds()
			if group != "" {
				r.Target, r.Group = group, args
			} else if len(args) > 1 {
				return fmt.Errorf("schedule takes one target; several are checkpointed together with --group NAME")
			}
			st, err := cl.SetSchedule(c.ctx(), &r)
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(st)
			}
			fmt.Printf("%s: %s\n", st.GetKey(), describeSchedule(st))
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&every, "every", 0, "interval between checkpoints, e.g. 10m (at least 1s)")
	f.StringVar(&group, "group", "", "checkpoint every TARGET at one instant, as the groups NAME-1, NAME-2...")
	f.Int32Var(&r.KeepLast, "keep-last", 0, "keep the N newest scheduled checkpoints")
	f.Int32Var(&r.KeepHourly, "keep-hourly", 0, "keep the newest checkpoint of each of the last N hours that have one")
	f.Int32Var(&r.KeepDaily, "keep-daily", 0, "keep the newest checkpoint of each of the last N days (UTC) that have one")
	f.StringVar(&maxBytes, "max-bytes", "", "remove the oldest scheduled checkpoints until the rest fit, e.g. 20GiB")
	cmd.MarkFlagRequired("every")
	cmd.AddCommand(c.scheduleLsCmd(), c.scheduleRmCmd())
	return cmd
}

func (c *cli) scheduleLsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List schedules with their last run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.ListSchedules(c.ctx(), &apiv1.ListSchedulesRequest{})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSONList(resp.GetSchedules())
			}
			w := newTable("TARGET", "POLICY", "LAST RUN", "LAST CHECKPOINT", "RUNS", "SKIPPED", "FAILED", "LAST ERROR")
			for _, s := range resp.GetSchedules() {
				last := ago(s.GetLastRunUnixNano())
				if s.GetRunning() {
					last = "running"
				}
				row(w, scheduleTarget(s), describeSchedule(s), last, or(shortID(s.GetLastCheckpoint()), "-"),
					s.GetRuns(), s.GetSkipped(), s.GetFailures(), or(s.GetLastError(), "-"))
			}
			return w.Flush()
		},
	}
}

func (c *cli) scheduleRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm TARGET",
		Short: "End a target's schedule (its checkpoints stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if _, err := cl.RemoveSchedule(c.ctx(), &apiv1.RemoveScheduleRequest{Target: args[0]}); err != nil {
				return err
			}
			if c.output == "json" {
				return printObject(map[string]any{"schedule_removed": args[0]})
			}
			fmt.Printf("schedule of %s removed\n", args[0])
			return nil
		},
	}
}

// describeSchedule is a policy in a few words: "every 10m, keep last 5".
func describeSchedule(s *apiv1.Schedule) string {
	if s == nil {
		return "-"
	}
	parts := []string{"every " + time.Duration(s.GetEveryNs()).String()}
	for _, k := range []struct {
		n    int32
		what string
	}{{s.GetKeepLast(), "last"}, {s.GetKeepHourly(), "hourly"}, {s.GetKeepDaily(), "daily"}} {
		if k.n > 0 {
			parts = append(parts, fmt.Sprintf("keep %s %d", k.what, k.n))
		}
	}
	if s.GetMaxBytes() > 0 {
		parts = append(parts, "max "+humanBytes(s.GetMaxBytes()))
	}
	return strings.Join(parts, ", ")
}

// scheduleTarget names a schedule's target as ps does (pid:N for a PID).
func scheduleTarget(s *apiv1.Schedule) string {
	if _, err := strconv.Atoi(s.GetTarget()); err == nil {
		return "pid:" + s.GetTarget()
	}
	return s.GetTarget()
}
