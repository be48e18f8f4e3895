package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"

	"github.com/ckptd/ckptd/errdefs"
)

// Call is one RPC request to a `criu swrk` helper.
type Call struct {
	Op      string // for errors: "dump", "restore"
	Type    rpc.CriuReqType
	Opts    *rpc.CriuOpts
	LogPath string // CRIU's log, named in every error
	// Files are passed to the helper as descriptors 4, 5, ... (for
	// inherit_fd), in this order.
	Files []*os.File
	// Handoff closes Files once the helper has its copies: a socket given
	// to CRIU must see its peer hang up when CRIU closes it.
	Handoff bool
	// Notify handles CRIU's notifications (post-dump, post-restore, ...);
	// an error makes CRIU abort and roll back. Time spent in it does not
	// count against Timeout: it is ckptd's own work.
	Notify func(script string, pid int32) error
	// Timeout is how long CRIU may take; on expiry its whole process group
	// is killed and the call fails with errdefs.ErrDeadlineExceeded.
	Timeout time.Duration
	// Keys are held for the call: calls that share one run one at a time
	// (see DumpKeys); calls with none run at once.
	Keys []string
	// Launch, if set, starts the helper instead of ckptd (see Launcher).
	Launch Launcher
	// As, if set, runs the helper as that user, with the capabilities
	// CRIU's unprivileged mode needs (see User).
	As *User
}

// helperFD is the descriptor number of the RPC socket in the helper.
const helperFD = 3

// Run performs call with a fresh helper in its own process group. When it
// returns, the helper and everything it started are gone, unless the call
// succeeded (a restored tree may live in the helper's group). The context
// only cancels the wait for call.Keys: once CRIU runs, it completes or
// rolls back, and only the watchdog cuts it short.
func (b Binary) Run(ctx context.Context, call Call) (*rpc.CriuResp, error) {
	release, err := b.Helpers.acquire(ctx, call.Keys)
	if err != nil {
		return nil, err
	}
	defer release()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu %s: socketpair: %w", call.Op, err)
	}
	// Non-blocking, so that reads go through the poller and can be cut
	// short by a deadline however many processes hold the other end.
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "criu-rpc"), os.NewFile(uintptr(fds[1]), "criu-rpc-helper")
	defer ours.Close()
	argv, files := []string{b.Path, "swrk", fmt.Sprint(helperFD)}, append([]*os.File{theirs}, call.Files...)
	var g *group
	if call.Launch != nil {
		g, err = b.Helpers.launch(argv, files, call.Launch)
	} else {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.ExtraFiles = files
		if call.As != nil {
			call.As.apply(cmd, call.Opts)
		}
		g, err = b.Helpers.start(cmd)
	}
	theirs.Close()
	if call.Handoff {
		for _, f := range call.Files {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("start criu swrk: %w", err)
	}
	resp, err := b.converse(ours, g, call)
	if eerr := g.end(err == nil); eerr != nil {
		b.Helpers.log.Error("criu leftovers", "op", call.Op, "err", eerr)
		if err == nil {
			err = eerr
		}
	}
	return resp, err
}

// converse sends the request and answers notifications until CRIU's final
// answer, its exit, or the watchdog.
func (b Binary) converse(sock *os.File, g *group, call Call) (*rpc.CriuResp, error) {
	w := newWatchdog(call.Timeout, g)
	defer w.stop()
	// When the helper exits, whatever it had queued is read at once; a
	// socket still held open by its children must not keep us waiting.
	go func() {
		select {
		case <-g.exited:
			_ = sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		case <-w.fired:
		}
	}()
	typ := call.Type
	req := &rpc.CriuReq{Type: &typ, Opts: call.Opts}
	if call.Notify != nil && call.Opts != nil {
		call.Opts.NotifyScripts = ptr(true)
	}
	buf := make([]byte, 64*1024)
	for {
		resp, err := exchange(sock, req, buf)
		if err != nil {
			return nil, b.callError(call, w, g, err)
		}
		if !resp.GetSuccess() {
			return resp, b.callError(call, w, g, fmt.Errorf("operation failed (errno %d)", resp.GetCrErrno()))
		}
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			if resp.GetType() != call.Type {
				return resp, b.callError(call, w, g, fmt.Errorf("unexpected answer %v", resp.GetType()))
			}
			return resp, nil
		}
		if call.Notify != nil {
			w.pause()
			nerr := call.Notify(resp.GetNotify().GetScript(), resp.GetNotify().GetPid())
			w.resume()
			if nerr != nil {
				// CRIU is told, rolls back and answers with a failure; the
				// caller's own error explains it better than CRIU's.
				refuseRest(sock, buf)
				return nil, &NotifyError{Script: resp.GetNotify().GetScript(), Err: nerr}
			}
		}
		req = notifyAck(true)
	}
}

// refuseRest tells CRIU a notification failed and refuses every later one
// until its final answer, so that it rolls back in order rather than being
// killed mid-way: a failed post-dump of a lazy dump is followed by
// status-ready, whose refusal stops the page server before it serves.
func refuseRest(sock *os.File, buf []byte) {
	for {
		resp, err := exchange(sock, notifyAck(false), buf)
		if err != nil || resp.GetType() != rpc.CriuReqType_NOTIFY {
			return
		}
	}
}

// NotifyError is a failure of the caller's own notification handler.
type NotifyError struct {
	Script string
	Err    error
}

func (e *NotifyError) Error() string { return e.Err.Error() }
func (e *NotifyError) Unwrap() error { return e.Err }

func notifyAck(ok bool) *rpc.CriuReq {
	t := rpc.CriuReqType_NOTIFY
	return &rpc.CriuReq{Type: &t, NotifySuccess: ptr(ok)}
}

func exchange(sock *os.File, req *rpc.CriuReq, buf []byte) (*rpc.CriuResp, error) {
	b, err := req.MarshalVT()
	if err != nil {
		return nil, err
	}
	if _, err := sock.Write(b); err != nil {
		return nil, err
	}
	n, err := sock.Read(buf)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("criu closed the connection")
	}
	resp := &rpc.CriuResp{}
	if err := resp.UnmarshalVT(buf[:n]); err != nil {
		return nil, fmt.Errorf("decode criu answer: %w", err)
	}
	return resp, nil
}

// callError explains a failed call: the watchdog's verdict, or CRIU's.
func (b Binary) callError(call Call, w *watchdog, g *group, err error) error {
	if w.expired() {
		return fmt.Errorf("criu %s: no answer within %s; its process group was killed: %w: last log line: %q (log: %s)",
			call.Op, call.Timeout, errdefs.ErrDeadlineExceeded, LastLogLine(call.LogPath), call.LogPath)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		select {
		case <-g.exited:
			err = fmt.Errorf("criu exited (%v) and left processes holding its socket", g.err)
		default:
		}
	}
	return Error(call.Op, call.LogPath, err)
}

// Deadline is how long a call over memBytes of memory may take: the
// configured Timeout, or else 2 minutes plus 1 per GiB, far more than a
// healthy dump or restore needs (16 GiB: 18 minutes; this VM writes a GiB
// in 0.5-10 s).
func (b Binary) Deadline(memBytes int64) time.Duration {
	if b.Timeout > 0 {
		return b.Timeout
	}
	return 2*time.Minute + time.Duration(memBytes>>30)*time.Minute
}

func ptr[T any](v T) *T { return &v }
