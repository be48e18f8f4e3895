package main

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) persistCmd() *cobra.Command {
	var group string
	cmd := &cobra.Command{
		Use:   "persist TARGET on|off [--group NAME]",
		Short: "Have a workload or container outlive reboots: a shutdown of ckptd (systemd's at a reboot, or ckptd --checkpoint-on-stop) checkpoints and stops it, and the next start restores it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[1] {
			case "on":
				on = true
			case "off":
			default:
				return fmt.Errorf("persist %s %s: want on or off", args[0], args[1])
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.Persist(c.ctx(), &apiv1.PersistRequest{Target: args[0], On: on, Group: group})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(t)
			}
			switch {
			case on && group != "":
				fmt.Printf("%s persists in group %s: checkpointed with the group's other workloads at one instant at a shutdown, restored with them at the next start\n", args[0], group)
			case on:
				fmt.Printf("%s persists: checkpointed at a shutdown, restored at the next start\n", args[0])
			default:
				fmt.Printf("%s no longer persists\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "with on: persist it in this group, whose workloads a shutdown checkpoints at one instant (a group checkpoint) and the next start restores together, all or none, in the order they were marked")
	return cmd
}

// persistStatus is ps's status of a persisted target that does not run:
// its shutdown checkpoint waits, or its restore failed.
func persistStatus(t *apiv1.Target) (string, bool) {
	switch {
	case t.GetRunning() || t.GetPersistCheckpoint() == "":
		return "", false
	case t.GetPersistError() != "":
		return "not restored: " + t.GetPersistError(), true
	}
	return "checkpointed for shutdown", true
}
