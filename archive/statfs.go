package archive

import "golang.org/x/sys/unix"

// freeBytes is what an unprivileged writer may still put on dir's file
// system.
func freeBytes(dir string) (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * fs.Bsize, nil
}
