package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/ckptd/ckptd/peer"
)

// certsCmd creates the credentials ckptd daemons use to trust each other
// (mutual TLS). It works on local files only; no daemon is involved.
func (c *cli) certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a CA and host certificates for daemon-to-daemon mutual TLS, and signing keys",
	}
	cmd.AddCommand(c.certsCACmd(), c.certsHostCmd(), c.signingKeyCmd())
	return cmd
}

func (c *cli) certsCACmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "ca DIR",
		Short: "Create a CA (ca.pem, ca-key.pem) in DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := peer.NewCA(args[0], name); err != nil {
				return err
			}
			fmt.Printf("CA written to %s\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "ckptd CA", "the CA's common name")
	return cmd
}

func (c *cli) certsHostCmd() *cobra.Command {
	var caDir, out string
	var ips []net.IP
	var dns []string
	cmd := &cobra.Command{
		Use:   "host NAME --ca DIR --out DIR --ip ADDR... [--dns NAME...]",
		Short: "Issue a host certificate signed by the CA, for a ckptd reachable at the given addresses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if caDir == "" || out == "" {
				return fmt.Errorf("--ca and --out are required")
			}
			if err := peer.IssueHost(caDir, out, args[0], ips, dns); err != nil {
				return err
			}
			fmt.Printf("host certificate for %s written to %s (cert.pem, key.pem, ca.pem)\n", args[0], out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&caDir, "ca", "", "directory of the CA")
	f.StringVar(&out, "out", "", "directory to write the host's credentials into")
	f.IPSliceVar(&ips, "ip", nil, "IP address the host is reached at (repeatable)")
	f.StringSliceVar(&dns, "dns", nil, "DNS name the host is reached at (repeatable)")
	return cmd
}
