package container

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/foreign"
)

// localSources gives the bind mounts another engine made for a container
// on its own host (foreign.LocalSource: hosts, hostname, resolv.conf, its
// env file, /dev/shm) fresh sources in dir, so that runc finds each
// external mount CRIU recorded. /dev/shm gets what devShmTar saved.
func localSources(spec *specs.Spec, dir, devShmTar string) error {
	made := false
	for i, m := range spec.Mounts {
		name, ok := strings.CutPrefix(m.Source, foreign.LocalSource)
		if !ok {
			continue
		}
		if !made {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			made = true
		}
		src := filepath.Join(dir, filepath.Base(name))
		if err := makeSource(src, filepath.Base(name), spec.Hostname, devShmTar); err != nil {
			return fmt.Errorf("source of %s: %w", m.Destination, err)
		}
		spec.Mounts[i].Source = src
	}
	return nil
}

func makeSource(src, name, hostname, devShmTar string) error {
	switch name {
	case "shm":
		if err := os.Mkdir(src, 0o1777); err != nil {
			return err
		}
		return untarPlain(devShmTar, src)
	case "hosts":
		hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
		if hostname != "" {
			hosts += "127.0.1.1\t" + hostname + "\n"
		}
		return os.WriteFile(src, []byte(hosts), 0o644)
	case "hostname":
		return os.WriteFile(src, []byte(hostname+"\n"), 0o644)
	case "resolv.conf":
		data, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		return os.WriteFile(src, data, 0o644)
	}
	return os.WriteFile(src, []byte("engine=\"ckptd\"\n"), 0o644)
}

// untarPlain unpacks the directories and regular files of the tar at
// archive (absent: nothing) into dir; anything else is refused.
func untarPlain(archive, dir string) error {
	f, err := os.Open(archive)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(archive), err)
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			err = writeNew(dst, tr, os.FileMode(h.Mode)&0o777)
		default:
			err = fmt.Errorf("%s holds %s, not a file or directory: %w", filepath.Base(archive), h.Name, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return err
		}
	}
}

func writeNew(dst string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}
