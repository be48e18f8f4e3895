package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) hibernateCmd() *cobra.Command {
	return c.switchCmd("hibernate NAME",
		"Scale a workload run with --idle-after to zero now: checkpoint and stop it; ckptd holds its ports and wakes it on the next connection",
		func(ctx context.Context, cl apiv1.CkptdClient, name string) (*apiv1.Target, error) {
			return cl.Hibernate(ctx, &apiv1.HibernateRequest{Name: name})
		})
}

func (c *cli) wakeCmd() *cobra.Command {
	return c.switchCmd("wake NAME", "Wake a hibernated workload now, as its next connection would",
		func(ctx context.Context, cl apiv1.CkptdClient, name string) (*apiv1.Target, error) {
			return cl.Wake(ctx, &apiv1.WakeRequest{Name: name})
		})
}

// switchCmd puts a workload that scales to zero to sleep or wakes it.
func (c *cli) switchCmd(use, short string, call func(context.Context, apiv1.CkptdClient, string) (*apiv1.Target, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := call(c.ctx(), cl, args[0])
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(t)
			}
			if t.GetHibernated() {
				fmt.Printf("%s hibernated%s\n", args[0], where(t))
			} else {
				fmt.Printf("%s running as pid %d%s\n", args[0], t.GetRef().GetPid(), where(t))
			}
			return nil
		},
	}
}
