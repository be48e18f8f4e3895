package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LazySocket is where `criu lazy-pages` listens for the restore, in the
// work directory both share (CRIU names it relative to its working
// directory).
const LazySocket = "lazy-pages.socket"

// LazyPages is a running `criu lazy-pages`: it takes the restored tree's
// userfaultfds and fills its memory from a remote page server, on demand
// and in the background, until every page is in.
type LazyPages struct {
	g   *group
	log string
}

// LazyPages starts `criu lazy-pages` for the images in dir, on a socket
// already connected to the source's page server; the restore must use
// workDir as its work directory. Its log goes to logPath.
func (b Binary) LazyPages(dir, workDir, logPath string, sock *os.File) (*LazyPages, error) {
	cmd := exec.Command(b.Path, "lazy-pages", "--page-server", "--ps-socket", "3",
		"-D", dir, "-W", workDir, "-o", logPath, "-v4")
	cmd.ExtraFiles = []*os.File{sock}
	g, err := b.Helpers.start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start criu lazy-pages: %w", err)
	}
	return &LazyPages{g: g, log: logPath}, nil
}

// Ready waits until the daemon listens for the restore in workDir.
func (l *LazyPages) Ready(ctx context.Context, workDir string) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(workDir, LazySocket)); err == nil {
			return nil
		}
		select {
		case <-l.g.exited:
			return Error("lazy-pages", l.log, fmt.Errorf("exited before it listened: %v", l.g.err))
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return Error("lazy-pages", l.log, errors.New("did not listen within 30s"))
		case <-t.C:
		}
	}
}

// Exited is closed when the daemon has exited.
func (l *LazyPages) Exited() <-chan struct{} { return l.g.exited }

// End waits for the daemon, killing its group first unless it exited; it
// returns why the daemon failed, if it did. The caller must have ended
// the restored tree first if the daemon had not said every page is in:
// a killed daemon leaves the tree's missing pages zero-filled.
func (l *LazyPages) End() error {
	select {
	case <-l.g.exited:
	default:
		_ = l.g.kill()
	}
	<-l.g.exited
	err := l.g.err
	if eerr := l.g.end(false); err == nil {
		err = eerr
	}
	if err != nil {
		return Error("lazy-pages", l.log, err)
	}
	return nil
}

// LazyPipeMax is the fs.pipe-max-size CRIU's lazy dump needs: its page
// pipe is sized to about 3 MiB with F_SETPIPE_SZ, which above the limit
// needs CAP_SYS_RESOURCE (then "page-pipe: splice: Bad file descriptor").
const LazyPipeMax = 8 << 20

const pipeMaxSysctl = "/proc/sys/fs/pipe-max-size"

// pipeMaxRecord, among the helper records, keeps the value a raise
// replaced until it is put back: a ckptd killed meanwhile puts it back at
// its next start (EndLeftovers).
const pipeMaxRecord = "pipe-max-size"

// RaisePipeMax raises fs.pipe-max-size to LazyPipeMax for a lazy dump, if
// it is lower, and the function it returns puts it back once the last
// such dump ends.
func (h *Helpers) RaisePipeMax() (restore func(), err error) {
	h.pipeMu.Lock()
	defer h.pipeMu.Unlock()
	if h.pipeUsers == 0 {
		cur, err := PipeMax()
		if err != nil {
			return nil, err
		}
		if cur < LazyPipeMax {
			if err := writeAtomic(filepath.Join(h.dir, pipeMaxRecord), strconv.FormatInt(cur, 10)); err != nil {
				return nil, fmt.Errorf("record fs.pipe-max-size: %w", err)
			}
			if err := os.WriteFile(pipeMaxSysctl, []byte(strconv.Itoa(LazyPipeMax)), 0o644); err != nil {
				return nil, errors.Join(fmt.Errorf("raise fs.pipe-max-size for CRIU's lazy pages: %w", err), h.putPipeMaxBack())
			}
		}
	}
	h.pipeUsers++
	return sync.OnceFunc(func() {
		h.pipeMu.Lock()
		defer h.pipeMu.Unlock()
		if h.pipeUsers--; h.pipeUsers == 0 {
			if err := h.putPipeMaxBack(); err != nil {
				h.log.Error("put fs.pipe-max-size back", "err", err)
			}
		}
	}), nil
}

// putPipeMaxBack restores the value recorded by RaisePipeMax, if any.
func (h *Helpers) putPipeMaxBack() error {
	rec := filepath.Join(h.dir, pipeMaxRecord)
	data, err := os.ReadFile(rec)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	v := strings.TrimSpace(string(data))
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return fmt.Errorf("%s: %q is not a size", rec, v)
	}
	if err := os.WriteFile(pipeMaxSysctl, []byte(v), 0o644); err != nil {
		return err
	}
	return os.Remove(rec)
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// PipeMax reads fs.pipe-max-size.
func PipeMax() (int64, error) {
	data, err := os.ReadFile(pipeMaxSysctl)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}
