package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/notify"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/store"
)

// Command hooks are notify's messages for programs that cannot listen on
// a socket: run --hook prepare=CMD, sealed=CMD, restored=CMD. Each runs
// with sh -c in the workload's namespaces, as its owner, bounded, its
// output in the workload's log; prepare's standard output (at most 64
// KiB) is the checkpoint's payload.

// parseHooks reads run's --hook values.
func parseHooks(specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	hooks := map[string]string{}
	for _, s := range specs {
		k, cmd, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(cmd) == "" || (k != notify.Prepare && k != notify.Sealed && k != notify.Restored) {
			return nil, fmt.Errorf("--hook %q: want prepare=CMD, sealed=CMD or restored=CMD: %w", s, errdefs.ErrInvalidArgument)
		}
		hooks[k] = cmd
	}
	return hooks, nil
}

// runHook runs t's hook for event, if it has one, with env added, and
// returns its standard output.
func (d *Daemon) runHook(ctx context.Context, t *store.Target, event string, timeout time.Duration, env ...string) ([]byte, error) {
	cmdline, ok := t.Hooks[event]
	if !ok || t.Kind != store.KindWorkload {
		return nil, nil
	}
	outer := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := []string{"--target", strconv.Itoa(t.PID), "--pid", "--net", "--mount", "--ipc", "--uts"}
	if t.Owner != 0 {
		args = append(args, "--setuid", strconv.Itoa(int(t.Owner)), "--setgid", strconv.Itoa(int(t.Owner)))
	}
	cmd := exec.Command("nsenter", append(args, "--", "/bin/sh", "-c", cmdline)...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CKPTD_HOOK=" + event, "CKPTD_WORKLOAD=" + t.Name}, env...)
	var stdout bytes.Buffer
	log, err := os.OpenFile(t.LogPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("%s hook: the workload's log: %w", event, err)
	}
	defer log.Close()
	cmd.Stdout = io.MultiWriter(&capped{w: &stdout, left: notify.MaxPayload + 1}, log)
	cmd.Stderr = log
	if err := proc.StartGroup(cmd); err != nil {
		return nil, fmt.Errorf("%s hook: %w", event, err)
	}
	stop := context.AfterFunc(ctx, func() { proc.KillGroup(cmd.Process.Pid) })
	err = cmd.Wait()
	stop()
	proc.Disown(cmd.Process.Pid)
	switch {
	case outer.Err() != nil: // the request's end, or a shutdown's bound
		return nil, fmt.Errorf("%s hook %q cut short: %w", event, cmdline, context.Cause(outer))
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s hook %q did not end within %s: %w", event, cmdline, timeout, context.DeadlineExceeded)
	case err != nil:
		return nil, fmt.Errorf("%s hook %q: %w (its output is in the workload's log)", event, cmdline, err)
	case stdout.Len() > notify.MaxPayload:
		return nil, fmt.Errorf("%s hook %q wrote more than %d bytes", event, cmdline, notify.MaxPayload)
	}
	return bytes.TrimRight(stdout.Bytes(), "\n"), nil
}

// hookEnv is what sealed and restored hooks are told.
func hookEnv(c *store.Checkpoint) []string {
	return []string{"CKPTD_CHECKPOINT=" + c.ID, "CKPTD_APP_STATE=" + base64.StdEncoding.EncodeToString(c.AppState)}
}

// capped keeps at most left bytes of what is written, and swallows the
// rest (which the caller then refuses).
type capped struct {
	w    io.Writer
	left int
}

func (c *capped) Write(p []byte) (int, error) {
	n := min(len(p), c.left)
	c.left -= n
	if _, err := c.w.Write(p[:n]); err != nil {
		return 0, err
	}
	return len(p), nil
}
