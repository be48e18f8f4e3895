// Package images reads CRIU image directories (through go-criu's crit)
// for inspection and restore pre-checks. It never writes.
package images

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"

	"github.com/ckptd/ckptd/chain"
)

// crit keeps a package-level cache of decoded images; one reader at a time.
var critMu sync.Mutex

// Process is one process of a checkpointed tree.
type Process struct {
	PID         uint32   `json:"pid"`
	PPID        uint32   `json:"ppid"`
	Comm        string   `json:"comm"`
	Command     []string `json:"command,omitempty"`
	MemoryBytes int64    `json:"memory_bytes"` // pages saved in the images
	Files       []File   `json:"files,omitempty"`
	Sockets     []Socket `json:"sockets,omitempty"`
}

// File is an open file descriptor.
type File struct {
	FD   string `json:"fd"`
	Type string `json:"type"`
	Path string `json:"path"`
}

// Socket is an open socket.
type Socket struct {
	FD    uint32 `json:"fd"`
	Type  string `json:"type"`
	State string `json:"state,omitempty"`
	Src   string `json:"src,omitempty"`
	Dst   string `json:"dst,omitempty"`
}

// PIDs lists the PIDs of the tree (as seen in its own PID namespace).
func PIDs(dir string) (_ []int, err error) {
	critMu.Lock()
	defer critMu.Unlock()
	defer guard(&err)
	if err := checkFraming(dir); err != nil {
		return nil, err
	}
	root, err := explore(crit.New(nil, nil, dir, false, true))
	if err != nil {
		return nil, fmt.Errorf("read process tree from %s: %w", dir, err)
	}
	var out []int
	walk(root, 0, func(p *crit.PsTree, _ uint32) { out = append(out, int(p.PID)) })
	return out, nil
}

// explore reads the process tree; an empty one is an error.
func explore(c crit.Critter) (*crit.PsTree, error) {
	root, err := c.ExplorePs()
	if err == nil && root == nil {
		err = errors.New("pstree.img holds no process")
	}
	return root, err
}

// guard turns a panic of the image decoder into an error: images are
// outside input (a peer sent them, a disk may have mangled them).
func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("malformed images: %v", r)
	}
}

func walk(p *crit.PsTree, ppid uint32, fn func(*crit.PsTree, uint32)) {
	fn(p, ppid)
	for _, c := range p.Children {
		walk(c, p.PID, fn)
	}
}

// Read summarizes the tree in dir: processes, commands, memory, files, sockets.
func Read(dir string) (_ []Process, err error) {
	critMu.Lock()
	defer critMu.Unlock()
	defer guard(&err)
	if err := checkFraming(dir); err != nil {
		return nil, err
	}
	c := crit.New(nil, nil, dir, false, true)
	root, err := explore(c)
	if err != nil {
		return nil, fmt.Errorf("read process tree: %w", err)
	}
	var procs []Process
	index := map[uint32]int{}
	walk(root, 0, func(p *crit.PsTree, ppid uint32) {
		index[p.PID] = len(procs)
		procs = append(procs, Process{PID: p.PID, PPID: ppid, Comm: p.Comm})
	})
	for i := range procs {
		procs[i].Command, procs[i].MemoryBytes = memory(dir, procs[i].PID)
	}
	fds, err := c.ExploreFds()
	if err != nil {
		return nil, fmt.Errorf("read open files: %w", err)
	}
	for _, fd := range fds {
		if i, ok := index[fd.PId]; ok {
			for _, f := range fd.Files {
				procs[i].Files = append(procs[i].Files, File{FD: f.Fd, Type: f.Type, Path: f.Path})
			}
		}
	}
	sks, err := c.ExploreSk()
	if err != nil {
		return nil, fmt.Errorf("read sockets: %w", err)
	}
	for _, sk := range sks {
		if i, ok := index[sk.PId]; ok {
			for _, s := range sk.Sockets {
				procs[i].Sockets = append(procs[i].Sockets, Socket{FD: s.Fd, Type: s.FdType + "/" + s.Type, State: s.State,
					Src: addr(s.SrcAddr, s.SrcPort), Dst: addr(s.DestAddr, s.DestPort)})
			}
		}
	}
	return procs, nil
}

// memory returns the argv and the bytes of saved pages of one process.
// A process without pages (a zombie, say) has neither.
func memory(dir string, pid uint32) ([]string, int64) {
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("pagemap-%d.img", pid))); err != nil {
		return nil, 0
	}
	page := os.Getpagesize()
	mr, err := crit.NewMemoryReader(dir, pid, page)
	if err != nil {
		return nil, 0
	}
	var pages int64
	inParent := false
	for _, e := range mr.GetPagemapEntries() {
		inParent = inParent || e.GetFlags()&1 != 0 // PE_PARENT
		// CRIU writes the page count as compat_nr_pages, which go-criu's
		// page lookup does not read: copy it where the lookup looks.
		if e.NrPages == nil {
			n := uint64(e.GetCompatNrPages())
			e.NrPages = &n
		}
		pages += int64(e.GetNrPages())
	}
	var argv []string
	if args, err := psArgs(dir, pid, mr, inParent); err == nil {
		argv = strings.Split(strings.TrimRight(string(args), "\x00"), "\x00")
	}
	return argv, pages * int64(page)
}

func addr(host string, port uint32) string {
	if port == 0 {
		return host
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// psArgs reads a process's argv from its memory; in an incremental
// checkpoint (PE_PARENT entries) through the chain, which go-criu's
// reader does not follow.
func psArgs(dir string, pid uint32, mr *crit.MemoryReader, inParent bool) ([]byte, error) {
	if !inParent {
		buf, err := mr.GetPsArgs()
		if err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	img, err := decodeFile(filepath.Join(dir, fmt.Sprintf("mm-%d.img", pid)), &mm.MmEntry{})
	if err != nil {
		return nil, err
	}
	if len(img.Entries) == 0 {
		return nil, fmt.Errorf("mm-%d.img has no entry", pid)
	}
	m, _ := img.Entries[0].Message.(*mm.MmEntry) // the decoder fills its own entries, not the one given
	start, end := m.GetMmArgStart(), m.GetMmArgEnd()
	if end < start {
		return nil, fmt.Errorf("mm-%d.img: argv ends before it starts", pid)
	}
	return chain.ReadMemory(dir, fmt.Sprintf("pagemap-%d.img", pid), start, int(min(end-start, 1<<20)))
}
