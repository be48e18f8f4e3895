package main

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of ckptd, CRIU and the kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			v, err := cl.Version(c.ctx(), &apiv1.VersionRequest{})
			if c.output == "json" {
				if err != nil {
					return err
				}
				return printJSONWith(v, map[string]any{"ckptctl": version})
			}
			fmt.Printf("ckptctl: %s\n", version) // even when ckptd is down
			if err != nil {
				return err
			}
			fmt.Printf("ckptd:  %s (%s), %d goroutines, %d open files, %s resident\ncriu:   %s (%s)\nkernel: %s\n",
				v.GetDaemon(), v.GetGo(), v.GetGoroutines(), v.GetOpenFds(), humanBytes(v.GetRssBytes()), v.GetCriu(), v.GetCriuPath(), v.GetKernel())
			return nil
		},
	}
}

func (c *cli) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Report the daemon, CRIU and the kernel features checkpoints can use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.Check(c.ctx(), &apiv1.CheckRequest{})
			if err != nil {
				return err
			}
			daemon := &apiv1.CheckResult{Name: "daemon", Ok: true, Detail: "reachable at " + c.socket}
			resp.Checks = append([]*apiv1.CheckResult{daemon}, resp.GetChecks()...)
			if c.output == "json" {
				return printJSON(resp)
			}
			w := newTable("CHECK", "OK", "DETAIL")
			for _, ch := range resp.GetChecks() {
				ok := "yes"
				if !ch.GetOk() {
					ok = "no"
				}
				row(w, ch.GetName(), ok, ch.GetDetail())
			}
			return w.Flush()
		},
	}
}
