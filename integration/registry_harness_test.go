package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// registry is a private OCI registry (Debian's docker-registry,
// distribution 2.8) on a loopback port with a temporary root.
type registry struct {
	addr string // host:port
	root string // its storage
}

func startRegistry(t *testing.T) *registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry is not installed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	r := &registry{addr: "127.0.0.1:" + freePort(t), root: filepath.Join(dir, "storage")}
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", r.root, r.addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	waitFor(t, "registry on "+r.addr, func() bool {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// ref is an image reference in this registry.
func (r *registry) ref(repoTag string) string { return r.addr + "/" + repoTag }

// blobs lists the files of the registry's blob store.
func (r *registry) blobs(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(filepath.Join(r.root, "docker/registry/v2/blobs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
