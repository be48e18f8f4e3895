package images

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
)

// WindowSize is a terminal's size in character cells.
type WindowSize struct{ Rows, Cols uint16 }

// TerminalSize is the window size CRIU saved for the controlling terminal
// of the tree's session, and false when the checkpoint has none. ckptd's
// own record lacks it for shell jobs, whose terminal ckptd never held.
func TerminalSize(dir string) (_ WindowSize, _ bool, err error) {
	critMu.Lock()
	defer critMu.Unlock()
	defer guard(&err)
	infoPath, treePath := filepath.Join(dir, "tty-info.img"), filepath.Join(dir, "pstree.img")
	for _, p := range []string{infoPath, treePath} {
		if err := checkEntries(p); errors.Is(err, fs.ErrNotExist) {
			return WindowSize{}, false, nil
		} else if err != nil {
			return WindowSize{}, false, err
		}
	}
	tree, err := decodeFile(treePath, &pstree.PstreeEntry{})
	if err != nil || len(tree.Entries) == 0 {
		return WindowSize{}, false, err
	}
	root, _ := tree.Entries[0].Message.(*pstree.PstreeEntry)
	infos, err := decodeFile(infoPath, &tty.TtyInfoEntry{})
	if err != nil {
		return WindowSize{}, false, err
	}
	for _, e := range infos.Entries {
		info, _ := e.Message.(*tty.TtyInfoEntry)
		ws := info.GetWinsize()
		rows, cols := ws.GetWsRow(), ws.GetWsCol()
		if info.GetType() != tty.TtyType_PTY || info.GetSid() != root.GetSid() || info.GetSid() == 0 ||
			rows == 0 || cols == 0 || rows > 0xffff || cols > 0xffff {
			continue
		}
		return WindowSize{Rows: uint16(rows), Cols: uint16(cols)}, true, nil
	}
	return WindowSize{}, false, nil
}
