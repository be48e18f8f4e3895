package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
		Use:   "verify [CHECKPOINT...]",
		Short: "Check checkpoints' files against their checksums (indexed or quarantined; all without arguments)",
		Long: "Check checkpoints' files against their checksums: the ones named, or every indexed\n" +
			"checkpoint. With --readmit, a quarantined checkpoint that passes returns to the index.\n" +
			"Exits non-zero when a file does not match.",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				if readmit {
					return errors.New("--readmit needs the quarantined checkpoints to readmit (see: ckptctl quarantine ls)")
				}
				resp, err := cl.List(c.ctx(), &apiv1.ListRequest{})
				if err != nil {
					return err
				}
				for _, ck := range resp.GetCheckpoints() {
					args = append(args, ck.GetId())
				}
			}
			var damaged []string
			for _, ref := range args {
				problem, err := c.verifyOne(cl, ref, readmit)
				if err != nil {
					return err
				}
				if problem != "" {
					damaged = append(damaged, problem)
				}
			}
			switch {
			case len(damaged) == 1:
				return errors.New(damaged[0])
			case len(damaged) > 1:
				return fmt.Errorf("%d of %d checkpoints are damaged: %s", len(damaged), len(args), strings.Join(damaged, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readmit, "readmit", false, "return a quarantined checkpoint that passes to the index")
	return cmd
}

// verifyOne verifies one checkpoint and prints the result; a damaged one
// is returned as its problem.
func (c *cli) verifyOne(cl apiv1.CkptdClient, ref string, readmit bool) (string, error) {
	start := time.Now()
	resp, err := cl.Verify(c.ctx(), &apiv1.VerifyRequest{Checkpoint: ref, Readmit: readmit})
	if err != nil {
		return "", err
	}
	took := time.Since(start)
	if c.output == "json" {
		if err := printJSON(resp); err != nil {
			return "", err
		}
	}
	name := or(resp.GetCheckpoint().GetName(), ref)
	if resp.GetProblem() != "" {
		return fmt.Sprintf("checkpoint %s is damaged: %s", name, resp.GetProblem()), nil
	}
	if c.output == "json" {
		return "", nil
	}
	size := resp.GetCheckpoint().GetSize()
	rate := fmt.Sprintf("%s in %.2f s, %s/s", humanBytes(size), took.Seconds(), humanBytes(int64(float64(size)/max(took.Seconds(), 1e-3))))
	switch {
	case resp.GetReadmitted():
		fmt.Printf("%s: every file matches (%s); readmitted\n", name, rate)
	case resp.GetQuarantined():
		fmt.Printf("%s: every file matches (%s); still quarantined (use --readmit)\n", name, rate)
	default:
		fmt.Printf("%s: every file matches (%s)\n", name, rate)
	}
	return "", nil
}

func or(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
