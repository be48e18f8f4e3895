package store

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ckptd/ckptd/errdefs"
)

// FreeReserve is what Reserve always leaves free on the state root's file
// system, for ckptd's own index and logs.
const FreeReserve = 256 << 20

// Reserve promises n bytes of the state root's free space to one writer
// from outside (an incoming migration) until release. Promises add up:
// concurrent writers cannot each count the same free space.
func (s *Store) Reserve(n int64) (release func(), err error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(s.layout.Root, &fs); err != nil {
		return nil, fmt.Errorf("free space of %s: %w", s.layout.Root, err)
	}
	free := int64(fs.Bavail) * fs.Bsize
	s.mu.Lock()
	defer s.mu.Unlock()
	if left := free - s.reserved - FreeReserve; n > left {
		return nil, fmt.Errorf("%s has %d MiB free beyond what is promised to others and the %d MiB reserve; %d MiB needed: %w",
			s.layout.Root, max(left, 0)>>20, FreeReserve>>20, n>>20, errdefs.ErrFailedPrecondition)
	}
	s.reserved += n
	var once bool
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !once {
			once = true
			s.reserved -= n
		}
	}, nil
}
