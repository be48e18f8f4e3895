package images

import (
	"fmt"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
)

// Creds is who a tree runs as once CRIU restores it: the user and group
// of its root task, whether any of its tasks holds root (a real,
// effective, saved or file-system uid of 0), and whether any holds a uid
// other than its root task's.
type Creds struct {
	UID, GID uint32
	Root     bool
	Several  bool
}

// TreeCreds reads the credentials CRIU saved for every task of the tree
// in dir, which a restore gives back as they are.
func TreeCreds(dir string) (_ Creds, err error) {
	critMu.Lock()
	defer critMu.Unlock()
	defer guard(&err)
	if err := checkFraming(dir); err != nil {
		return Creds{}, err
	}
	root, err := explore(crit.New(nil, nil, dir, false, true))
	if err != nil {
		return Creds{}, fmt.Errorf("read process tree from %s: %w", dir, err)
	}
	var out Creds
	walk(root, 0, func(p *crit.PsTree, _ uint32) {
		if err != nil {
			return
		}
		var img *crit.CriuImage
		if img, err = decodeFile(filepath.Join(dir, fmt.Sprintf("core-%d.img", p.PID)), &criu_core.CoreEntry{}); err != nil {
			return
		}
		if len(img.Entries) == 0 {
			err = fmt.Errorf("core-%d.img has no entry", p.PID)
			return
		}
		core, _ := img.Entries[0].Message.(*criu_core.CoreEntry)
		c := core.GetThreadCore().GetCreds()
		if c == nil {
			err = fmt.Errorf("core-%d.img saves no credentials", p.PID)
			return
		}
		if p == root {
			out.UID, out.GID = c.GetUid(), c.GetGid()
		}
		for _, u := range []uint32{c.GetUid(), c.GetEuid(), c.GetSuid(), c.GetFsuid()} {
			out.Root = out.Root || u == 0
			out.Several = out.Several || u != out.UID
		}
	})
	return out, err
}
