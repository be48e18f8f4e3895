package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"google.golang.org/protobuf/proto"
)

// Need is a path the restored tree opens, maps, runs or works in, which
// CRIU reopens by name on restore.
type Need struct {
	Path string `json:"path"`
	Size int64  `json:"size"` // what CRIU will insist on; -1 when it does not check
	Dir  bool   `json:"dir,omitempty"`
	// Link is a symbolic link held itself (O_PATH|O_NOFOLLOW), which
	// CRIU reopens without following.
	Link bool `json:"link,omitempty"`
}

// Needs lists the regular files and directories of the checkpoint in dir
// that must exist on the restoring host. Files CRIU keeps in the images
// (deleted files it saved, link-remapped ones) are left out.
func Needs(dir string) (_ []Need, err error) {
	critMu.Lock()
	defer critMu.Unlock()
	defer guard(&err)
	remapped, err := remappedIDs(dir) // decodeFile checks each file's framing
	if err != nil {
		return nil, err
	}
	files, err := decodeFile(filepath.Join(dir, "files.img"), &fdinfo.FileEntry{})
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Need
	for _, e := range files.Entries {
		fe, ok := e.Message.(*fdinfo.FileEntry)
		if !ok || fe.GetType() != fdinfo.FdTypes_REG || fe.GetReg() == nil {
			continue
		}
		r := fe.GetReg()
		if remapped[r.GetId()] || seen[r.GetName()] || r.GetName() == "" {
			continue
		}
		seen[r.GetName()] = true
		n := Need{Path: r.GetName(), Size: -1, Dir: isDirMode(r.GetMode()), Link: isLinkMode(r.GetMode())}
		if r.Size != nil {
			n.Size = int64(r.GetSize())
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func isDirMode(mode uint32) bool  { return mode&0o170000 == 0o040000 }
func isLinkMode(mode uint32) bool { return mode&0o170000 == 0o120000 }

// remappedIDs are the file ids CRIU restores from its own images.
func remappedIDs(dir string) (map[uint32]bool, error) {
	img, err := decodeFile(filepath.Join(dir, "remap-fpath.img"), &remap.RemapFilePathEntry{})
	if errors.Is(err, fs.ErrNotExist) {
		return map[uint32]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[uint32]bool{}
	for _, e := range img.Entries {
		if r, ok := e.Message.(*remap.RemapFilePathEntry); ok {
			out[r.GetOrigId()] = true
		}
	}
	return out, nil
}

// decodeFile decodes an image of entries alone, once its entry sizes
// are checked: go-criu allocates what an entry declares (up to 4 GiB).
func decodeFile(path string, entry proto.Message) (_ *crit.CriuImage, err error) {
	defer guard(&err)
	if err := checkEntries(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return crit.New(f, nil, "", false, false).Decode(entry)
}

// Missing checks needs against this host: one problem per path (see
// Problem). skip holds paths the restore replaces (a workload's log).
func Missing(needs []Need, skip map[string]bool) []string {
	var problems []string
	for _, n := range needs {
		if p := n.Problem(); p != "" && !skip[n.Path] {
			problems = append(problems, p)
		}
	}
	return problems
}

// Problem says what is wrong with the path on this host: gone, of another
// kind, or of a size CRIU will refuse; "" when nothing.
func (n Need) Problem() string {
	stat := os.Stat
	if n.Link {
		stat = os.Lstat
	}
	st, err := stat(n.Path)
	switch {
	case err != nil:
		return fmt.Sprintf("%s is missing", n.Path)
	case n.Link != (st.Mode()&fs.ModeSymlink != 0):
		return fmt.Sprintf("%s is no longer a symbolic link", n.Path)
	case n.Dir != st.IsDir():
		return fmt.Sprintf("%s is no longer a %s", n.Path, map[bool]string{true: "directory", false: "file"}[n.Dir])
	case n.Size >= 0 && !n.Dir && st.Size() != n.Size:
		return fmt.Sprintf("%s has %d bytes, the checkpoint expects %d", n.Path, st.Size(), n.Size)
	}
	return ""
}

// OwnMounts reports whether the checkpoint carries its own mount
// namespace: its paths then live in mounts CRIU recreates, not on the host.
func OwnMounts(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "mountpoints-*.img"))
	return len(m) > 0
}
