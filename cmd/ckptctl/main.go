// Command ckptctl is the ckptd client.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ckptd/ckptd/api"
	apiv1 "github.com/ckptd/ckptd/api/v1"
)

const defaultSocket = "/run/ckptd/ckptd.sock"

// version is set at build time.
var version = "dev"

type cli struct {
	socket string
	output string
	conn   *grpc.ClientConn
}

func main() {
	c := &cli{}
	root := &cobra.Command{
		Use:           "ckptctl",
		Short:         "Checkpoint and restore processes with ckptd",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if c.output != "table" && c.output != "json" {
				return fmt.Errorf("--output %q: want table or json", c.output)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&c.socket, "socket", envOr("CKPTD_SOCKET", defaultSocket), "ckptd API socket")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(c.runCmd(), c.attachCmd(), c.psCmd(), c.logsCmd(), c.killCmd(), c.stopCmd(), c.hibernateCmd(), c.wakeCmd(), c.persistCmd(),
		c.createCmd(), c.lsCmd(), c.rmCmd(), c.restoreCmd(), c.inspectCmd(),
		c.verifyCmd(), c.quarantineCmd(), c.scheduleCmd(), c.eventsCmd(), c.exportCmd(), c.importCmd(), c.pushCmd(), c.pullCmd(), c.migrateCmd(), c.versionCmd(), c.checkCmd(), c.certsCmd())
	err := root.Execute()
	if c.conn != nil {
		c.conn.Close()
	}
	if err != nil {
		c.printError(err)
		if errors.As(err, new(interrupted)) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// printError prints err as one line on stderr: a JSON object under -o
// json.
func (c *cli) printError(err error) {
	msg := c.describe(err)
	if c.output == "json" {
		b, _ := json.Marshal(map[string]string{"error": msg})
		fmt.Fprintln(os.Stderr, string(b))
		return
	}
	fmt.Fprintln(os.Stderr, "ckptctl: "+msg)
}

// hint is a ckptctl command line to suggest, with the socket in use when
// it is not the default.
func (c *cli) hint(args ...string) string {
	if c.socket != defaultSocket && os.Getenv("CKPTD_SOCKET") != c.socket {
		args = append([]string{"--socket", c.socket}, args...)
	}
	return "ckptctl " + strings.Join(args, " ")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client dials ckptd lazily, so `--help` and bad flags need no daemon.
func (c *cli) client() (apiv1.CkptdClient, error) {
	if c.conn == nil {
		conn, err := grpc.NewClient("unix://"+c.socket,
			append(api.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	return apiv1.NewCkptdClient(c.conn), nil
}

// reachable tells a ckptd that is down from one that reports something it
// depends on (containerd) as unavailable.
func (c *cli) reachable() error {
	conn, err := net.DialTimeout("unix", c.socket, time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// describe turns an error into the one line the user sees.
func (c *cli) describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	if st.Code() == codes.Unavailable && !strings.HasPrefix(st.Message(), api.Stopping) {
		switch err := c.reachable(); {
		case errors.Is(err, syscall.EACCES):
			return fmt.Sprintf("permission denied on ckptd's socket %s: it serves root, and the group socket_group names if set", c.socket)
		case err != nil:
			return fmt.Sprintf("cannot reach ckptd at %s: is it running? (start it: ckptd --socket %s, or make run for the default socket; CKPTD_SOCKET sets ckptctl's)", c.socket, c.socket)
		}
	}
	return strings.ReplaceAll(st.Message(), "\n", " ")
}

func (c *cli) ctx() context.Context { return context.Background() }

// printJSON prints an API message with CRIU's field names.
func printJSON(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// printJSONWith prints m with extra fields beside its own.
func printJSONWith(m proto.Message, extra map[string]any) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	fields := map[string]any{}
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	for k, v := range extra {
		fields[k] = v
	}
	return printObject(fields)
}

// printJSONList prints messages as one JSON array.
func printJSONList[M proto.Message](ms []M) error {
	out := make([]json.RawMessage, 0, len(ms))
	for _, m := range ms {
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
		if err != nil {
			return err
		}
		out = append(out, b)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
