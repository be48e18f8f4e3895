package chain

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"
)

// VMA status bits and mmap flags (criu/include/image.h, sys/mman.h).
const (
	vmaRegular     = 1 << 0
	vmaVsyscall    = 1 << 2
	vmaVDSO        = 1 << 3
	vmaFilePrivate = 1 << 6
	vmaFileShared  = 1 << 7
	vmaAnonShared  = 1 << 8
	vmaAnonPrivate = 1 << 9
	vmaSysVIPC     = 1 << 10
	vmaSocket      = 1 << 11
	vmaVVAR        = 1 << 12
	vmaAIORing     = 1 << 13
	vmaMemfd       = 1 << 14
	vmaShadowStack = 1 << 15
	vmaGuard       = 1 << 16
	vmaUprobes     = 1 << 17
	vmaExtPlugin   = 1 << 27
	vmaUnsupported = 1 << 31

	mapHugeTLB = 0x40000

	// CRIU restores these from the top-level pages file or not from pages
	// at all (hugetlb, AIO rings, plugin memory, kernel-made areas): their
	// pages always stay present.
	vmaSpecial = vmaVsyscall | vmaVDSO | vmaVVAR | vmaSysVIPC | vmaSocket | vmaAIORing | vmaMemfd |
		vmaShadowStack | vmaGuard | vmaUprobes | vmaExtPlugin | vmaUnsupported
)

var mmName = regexp.MustCompile(`^mm-([0-9]+)\.img$`)

// span is a half-open address range.
type span struct{ start, end uint64 }

// spans is a sorted list of disjoint ranges.
type spans []span

func (s spans) contains(addr uint64) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].end > addr })
	return i < len(s) && s[i].start <= addr
}

// eligibility says, per pagemap image of one checkpoint, which addresses
// may be taken from the parent: pages of private VMAs that CRIU restores
// through its page reader, and of anonymous shared memory (by shmid).
type eligibility struct {
	private map[string]spans // pagemap-<pid>.img -> ranges
	shmem   map[string]bool  // pagemap-shmem-<id>.img -> whole image
}

func readEligibility(dir string) (*eligibility, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	el := &eligibility{private: map[string]spans{}, shmem: map[string]bool{}}
	refused := map[string]bool{}
	for _, de := range des {
		m := mmName.FindStringSubmatch(de.Name())
		if m == nil {
			continue
		}
		vmas, err := readVMAs(filepath.Join(dir, de.Name()))
		if err != nil {
			return nil, err
		}
		var ok spans
		for _, v := range vmas {
			status, flags := v.GetStatus(), v.GetFlags()
			special := status&vmaSpecial != 0 || flags&mapHugeTLB != 0
			shm := "pagemap-shmem-" + strconv.FormatUint(v.GetShmid(), 10) + ".img"
			switch {
			case status&vmaAnonShared != 0 && !special:
				el.shmem[shm] = true
			case status&(vmaAnonShared|vmaFileShared|vmaSysVIPC|vmaMemfd) != 0:
				refused[shm] = true
			case status&vmaRegular != 0 && status&(vmaAnonPrivate|vmaFilePrivate) != 0 && !special:
				ok = append(ok, span{v.GetStart(), v.GetEnd()})
			}
		}
		sort.Slice(ok, func(i, j int) bool { return ok[i].start < ok[j].start })
		el.private["pagemap-"+m[1]+".img"] = ok
	}
	for shm := range refused { // a shmid also mapped some special way stays present
		delete(el.shmem, shm)
	}
	return el, nil
}

// allows reports whether the page at addr of pagemap image name may be
// taken from the parent.
func (el *eligibility) allows(name string, addr uint64) bool {
	if el.shmem[name] {
		return true
	}
	return el.private[name].contains(addr)
}

func readVMAs(path string) ([]*vma.VmaEntry, error) {
	_, bodies, err := readFramed(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(bodies) != 1 {
		return nil, fmt.Errorf("mm image %s: %d entries, want 1", filepath.Base(path), len(bodies))
	}
	var e mm.MmEntry
	if err := proto.Unmarshal(bodies[0], &e); err != nil {
		return nil, fmt.Errorf("mm image %s: %w", filepath.Base(path), err)
	}
	return e.GetVmas(), nil
}
