package images

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/checkpoint-restore/go-criu/v8/magic"
)

// framedImage matches the images inspect and pre-flight decode whose body
// is only size-prefixed entries (no raw payload between them).
var framedImage = regexp.MustCompile(`^(pstree|files|inetsk|unixsk|remap-fpath)\.img$|^(core|mm|pagemap|fdinfo|ids|fs)-[0-9]+\.img$`)

// checkFraming walks the entry sizes of every framed image in dir before
// the decoder sees it: go-criu allocates each entry's declared size up
// front, so a malformed or hostile size (up to 4 GiB) must be refused
// first.
func checkFraming(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !framedImage.MatchString(e.Name()) {
			continue
		}
		if err := checkEntries(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func checkEntries(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	var hdr [4]byte
	if size < 4 {
		return fmt.Errorf("malformed image %s: %d bytes", filepath.Base(path), size)
	}
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return err
	}
	off := magics(binary.LittleEndian.Uint32(hdr[:]))
	if size < off {
		return fmt.Errorf("malformed image %s: %d bytes", filepath.Base(path), size)
	}
	for off < size {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			if err == io.EOF {
				return fmt.Errorf("malformed image %s: truncated entry header at %d", filepath.Base(path), off)
			}
			return err
		}
		n := int64(binary.LittleEndian.Uint32(hdr[:]))
		if off += 4; n > size-off {
			return fmt.Errorf("malformed image %s: an entry of %d bytes at %d runs past its end (%d)", filepath.Base(path), n, off, size)
		}
		off += n
	}
	return nil
}

var magicMap = sync.OnceValue(magic.LoadMagic)

// magics is where an image's entries start, after its magics: two when
// the first is the common or the service one, else one (as go-criu reads
// them).
func magics(first uint32) int64 {
	m := magicMap()
	if v := uint64(first); v == m.ByName["IMG_COMMON"] || v == m.ByName["IMG_SERVICE"] {
		return 8
	}
	return 4
}
