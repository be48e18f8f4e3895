package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/images"
	"github.com/ckptd/ckptd/store"
)

// filesPresent checks, before CRIU runs, that the files the tree had open,
// mapped, ran or worked in are on this host as CRIU will want them, and
// names every one that is not; CRIU would stop at the first, deep in its
// log.
func filesPresent(dir string, c *store.Checkpoint) error {
	if images.OwnMounts(dir) {
		return nil // its paths are in mounts CRIU recreates
	}
	needs, err := images.Needs(dir)
	if err != nil {
		return fmt.Errorf("read the files checkpoint %s needs: %w", c.Name, err)
	}
	if needs, err = recreated(dir, c, needs); err != nil {
		return fmt.Errorf("read the files checkpoint %s needs: %w", c.Name, err)
	}
	// A workload's log is handed in anew.
	if p := images.Missing(needs, map[string]bool{c.Target.LogPath: true}); len(p) > 0 {
		return fmt.Errorf("checkpoint %s needs files this host lacks: %s: %w", c.Name, strings.Join(p, "; "), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// recreated is needs without what CRIU makes itself at the restore: the
// tree's own proc files (/proc/PID/stat, fdinfo, maps), which it reopens
// under the PIDs it gives back; pseudo-terminals, which it recreates from
// its tty images; and a shell job's terminal, which is its caller's,
// whatever the old one was called.
func recreated(dir string, c *store.Checkpoint, needs []images.Need) ([]images.Need, error) {
	pids, err := images.PIDs(dir)
	if err != nil {
		return nil, err
	}
	own := map[string]bool{strconv.Itoa(c.Target.PID): true}
	for _, p := range pids {
		own[strconv.Itoa(p)] = true
	}
	_, err = os.Stat(filepath.Join(dir, "tty-info.img"))
	ptys := err == nil || c.Options.ShellJob
	return slices.DeleteFunc(needs, func(n images.Need) bool {
		if rest, ok := strings.CutPrefix(n.Path, "/proc/"); ok {
			pid, _, _ := strings.Cut(rest, "/")
			return own[pid]
		}
		return ptys && strings.HasPrefix(n.Path, "/dev/pts/")
	}), nil
}
