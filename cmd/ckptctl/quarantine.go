package main

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) quarantineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "quarantine",
		Short: "Checkpoints held out of the index (damaged files, unreadable record)",
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List quarantined checkpoints and why they are there",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.List(c.ctx(), &apiv1.ListRequest{Quarantined: true})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSONList(resp.GetQuarantined())
			}
			w := newTable("NAME", "ID", "SINCE", "REASON")
			for _, q := range resp.GetQuarantined() {
				row(w, or(q.GetCheckpoint().GetName(), "?"), shortID(q.GetId()), ago(q.GetSinceUnixNano()), q.GetReason())
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(ls)
	return cmd
}

func (c *cli) verifyCmd() *cobra.Command {
	var readmit bool
	cmd := &cobra.Command{
		Use:   "verify CHECKPOINT",
		Short: "Check a checkpoint's files against their checksums (indexed or quarantined)",
		Long: "Check a checkpoint's files against their checksums. With --readmit, a quarantined\n" +
			"checkpoint that passes returns to the index. Exits non-zero when a file does not match.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.Verify(c.ctx(), &apiv1.VerifyRequest{Checkpoint: args[0], Readmit: readmit})
			if err != nil {
				return err
			}
			if c.output == "json" {
				if err := printJSON(resp); err != nil {
					return err
				}
			}
			name := or(resp.GetCheckpoint().GetName(), args[0])
			if resp.GetProblem() != "" {
				return fmt.Errorf("checkpoint %s is damaged: %s", name, resp.GetProblem())
			}
			if c.output == "json" {
				return nil
			}
			switch {
			case resp.GetReadmitted():
				fmt.Printf("%s: every file matches; readmitted\n", name)
			case resp.GetQuarantined():
				fmt.Printf("%s: every file matches; still quarantined (use --readmit)\n", name)
			default:
				fmt.Printf("%s: every file matches\n", name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readmit, "readmit", false, "return a quarantined checkpoint that passes to the index")
	return cmd
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
