package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/term"
)

func (c *cli) attachCmd() *cobra.Command {
	var keys string
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach NAME|PID",
		Short: "Attach this terminal to the terminal session of a workload, or of a shell job ckptd restored (detach: ctrl-p ctrl-q)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.attach(args[0], keys, !noStdin)
		},
	}
	cmd.Flags().StringVar(&keys, "detach-keys", term.DefaultDetachKeys, "key sequence that detaches, e.g. ctrl-a,d")
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "show the session's output only; keys are not sent")
	return cmd
}

// attach relays this terminal to the session of name (a workload, or a
// restored shell job's PID) until the
// detach keys, the session's end, or ckptd's.
func (c *cli) attach(name, keys string, interactive bool) error {
	detached := new(atomic.Bool)
	detach, err := term.ParseDetachKeys(keys)
	if err != nil {
		return err
	}
	in := int(os.Stdin.Fd())
	cl, err := c.client()
	if err != nil {
		return err
	}
	stream, err := cl.Attach(c.ctx())
	if err != nil {
		return err
	}
	first := &apiv1.AttachInput{Name: name}
	if size, err := term.SizeOf(in); err == nil {
		first.Rows, first.Cols = uint32(size.Rows), uint32(size.Cols)
	}
	if err := stream.Send(first); err != nil {
		return attachError(stream.RecvMsg(new(apiv1.AttachOutput)))
	}
	// The first answer is the scrollback, or why attaching is refused,
	// before this terminal goes raw.
	out, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		return attachError(err)
	}
	if interactive && !term.IsTerminal(in) {
		return fmt.Errorf("attach needs a terminal, and stdin is not one ('%s' shows its output)", c.hint("logs", name))
	}
	if interactive {
		restore, err := term.MakeRaw(in)
		if err != nil {
			return err
		}
		defer restore()
		go sendKeys(stream, detach, detached)
		go sendResizes(stream, in)
	}
	for err == nil {
		os.Stdout.Write(out.GetData())
		out, err = stream.Recv()
	}
	fmt.Fprint(os.Stderr, "\r\n")
	switch {
	case errors.Is(err, io.EOF) && detached.Load():
		fmt.Fprintf(os.Stderr, "detached from %s; it keeps running ('%s')\r\n", name, c.hint("attach", name))
		return nil
	case errors.Is(err, io.EOF):
		fmt.Fprintf(os.Stderr, "the session of %s ended\r\n", name)
		return nil
	}
	return attachError(err)
}

// attachError words the end of an attachment that was not a detach.
func attachError(err error) error {
	if status.Code(err) == codes.Unavailable {
		return fmt.Errorf("lost ckptd; the session keeps running: attach again once ckptd is back")
	}
	return err
}

// sendKeys sends this terminal's keys until the detach sequence, then
// ends the stream.
func sendKeys(stream apiv1.Ckptd_AttachClient, keys []byte, detached *atomic.Bool) {
	d := term.NewDetacher(keys)
	buf := make([]byte, 4096)
	for {
		n, err := os.Stdin.Read(buf)
		if err != nil {
			return
		}
		out, leave := d.Feed(buf[:n])
		if len(out) > 0 {
			if stream.Send(&apiv1.AttachInput{Data: out}) != nil {
				return
			}
		}
		if leave {
			detached.Store(true)
			stream.CloseSend()
			return
		}
	}
}

// sendResizes passes this terminal's window size on when it changes.
func sendResizes(stream apiv1.Ckptd_AttachClient, fd int) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	for range ch {
		if size, err := term.SizeOf(fd); err == nil {
			if stream.Send(&apiv1.AttachInput{Rows: uint32(size.Rows), Cols: uint32(size.Cols)}) != nil {
				return
			}
		}
	}
}
