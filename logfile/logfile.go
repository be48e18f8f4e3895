// Package logfile bounds the logs workloads write: a log that outgrows its
// size is copied aside and emptied in place (the workload keeps its
// O_APPEND descriptor and writes on at the start), keeping a few old ones
// as LOG.1 (newest) to LOG.N.
package logfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Defaults, as Podman's users know them from --log-opt.
const (
	DefaultMaxSize  = 64 << 20
	DefaultMaxFiles = 3
)

// Policy bounds one log: at most MaxSize bytes in it, and MaxFiles files
// in all, the live one included.
type Policy struct {
	MaxSize  int64 `json:"max_size"`
	MaxFiles int   `json:"max_files"`
}

// Validate refuses a policy that would not bound anything.
func (p Policy) Validate() error {
	if p.MaxSize < 4096 || p.MaxFiles < 1 || p.MaxFiles > 100 {
		return fmt.Errorf("log rotation: max size %d bytes, max files %d: want at least 4 KiB and 1 to 100 files", p.MaxSize, p.MaxFiles)
	}
	return nil
}

// Old is the name of the n-th old log of path (1: the newest).
func Old(path string, n int) string { return path + "." + strconv.Itoa(n) }

// Rotate copies path aside and empties it if it has outgrown p.MaxSize.
// Bytes written between the end of the copy and the truncation are lost
// (logrotate's copytruncate has the same window); nothing else is.
func (p Policy) Rotate(path string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil || st.Size() <= p.MaxSize {
		return false, err
	}
	if p.MaxFiles > 1 {
		for n := p.MaxFiles - 1; n > 1; n-- {
			if err := os.Rename(Old(path, n-1), Old(path, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return false, err
			}
		}
		if err := copyAside(path, Old(path, 1)); err != nil {
			return false, err
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, fmt.Errorf("rotate %s: %w", path, err)
	}
	return true, nil
}

func copyAside(path, to string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := to + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, to)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rotate %s: %w", path, err)
	}
	return nil
}
