package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// interrupted is a client that stopped waiting for ckptd; ckptctl exits
// 130, as a shell reports an interrupted command.
type interrupted struct{ msg string }

func (e interrupted) Error() string { return e.msg }

// carriedThrough runs call, an operation ckptd finishes or rolls back
// whole without its client. A first interrupt says so (note) and keeps
// waiting for the outcome; a second stops waiting, with gone as the error.
func carriedThrough(ctx context.Context, note, gone string, call func(context.Context) error) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	waiting := false
	for {
		select {
		case err := <-done:
			return err
		case <-sigs:
			if waiting {
				cancel()
				<-done
				return interrupted{gone}
			}
			waiting = true
			fmt.Fprintln(os.Stderr, "ckptctl: interrupted: "+note+"; waiting for the outcome (interrupt again to stop waiting)")
		}
	}
}

// interruptible is ctx ended by the first interrupt, which says what the
// daemon does then (note); stop releases the signals.
func interruptible(ctx context.Context, note string) (context.Context, func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "ckptctl: interrupted: "+note)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}
