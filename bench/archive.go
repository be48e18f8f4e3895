package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// benchArchive measures export, import, push and pull of one *mib
// checkpoint, in turns with the anchor: tar and zstd of the same
// checkpoint directory (writing one file, then unpacking it), the work
// an operator would do by hand. Push and pull go to a private registry
// (Debian's docker-registry) on loopback.
func benchArchive(work string) {
	memload := buildMemload(work)
	d := startDaemon(work, "archive", filepath.Join(work, "no-containerd.sock"))
	defer d.stop()
	// Pseudo-random memory: the compressors get no help.
	d.ctl("run", "--name", "arc", "--net", "host", "--", memload, "--mib", strconv.Itoa(*mib), "--incompressible")
	_, logPath := workloadPID(d, "arc")
	waitReady(logPath)
	c := createJSON(d, "arc")
	dir := filepath.Join(d.root, "checkpoints", c.ID)
	reg, stopReg := startBenchRegistry(work)
	defer stopReg()

	file := filepath.Join(work, "arc.tar.zst")
	anchor := filepath.Join(work, "anchor.tar.zst")
	unpack := filepath.Join(work, "anchor-unpacked")
	var exp, imp, push, pull, tarC, tarX []sample
	for i := -1; i < *rounds; i++ { // round -1 warms the page cache
		tc := timed(func() { run("sh", "-c", fmt.Sprintf("tar -C %s -cf - . | zstd -1 -q -T0 -o %s -f", dir, anchor)) })
		e := timed(func() { d.ctl("export", c.Name, file) })
		check(os.MkdirAll(unpack, 0o700))
		tx := timed(func() { run("sh", "-c", fmt.Sprintf("zstd -d -q -c %s | tar -C %s -xf -", anchor, unpack)) })
		im := timed(func() { d.ctl("import", file, "--name", fmt.Sprintf("imp%d", i+1)) })
		ref := fmt.Sprintf("%s/bench/arc:%d", reg, i+1)
		pu := timed(func() { d.ctl("push", c.Name, ref) })
		pl := timed(func() { d.ctl("pull", ref, "--name", fmt.Sprintf("pull%d", i+1), "--insecure-skip-verify") })
		os.RemoveAll(unpack)
		d.ctl("rm", fmt.Sprintf("imp%d", i+1), fmt.Sprintf("pull%d", i+1))
		if i >= 0 {
			tarC, exp, tarX, imp = append(tarC, tc), append(exp, e), append(tarX, tx), append(imp, im)
			push, pull = append(push, pu), append(pull, pl)
		}
	}
	st, err := os.Stat(file)
	check(err)
	an, err := os.Stat(anchor)
	check(err)
	fmt.Printf("\narchives: one %d MiB workload checkpoint of incompressible memory (%.2f GiB on disk; archive %.2f GiB, tar+zstd -1 %.2f GiB)\n\n",
		*mib, gib(c.Size), gib(st.Size()), gib(an.Size()))
	fmt.Printf("%-34s %24s %10s %10s\n", "measure (s)", "min/med/max", "MiB/s", "vs anchor")
	row := func(name string, s, anchor []sample) {
		_, mid, _ := spread(s, wallOf)
		_, amid, _ := spread(anchor, wallOf)
		fmt.Printf("%-34s %24s %10.0f %10s\n", name, mmm(s, wallOf), float64(c.Size)/(1<<20)/mid.Seconds(), ratio(mid, amid))
	}
	row("anchor: tar | zstd -1 to a file", tarC, tarC)
	row("ckptctl export (zstd)", exp, tarC)
	row("ckptctl push (gzip, loopback)", push, tarC)
	row("anchor: zstd -d | tar -x", tarX, tarX)
	row("ckptctl import (verified)", imp, tarX)
	row("ckptctl pull (verified)", pull, tarX)
}

// startBenchRegistry starts docker-registry on a free loopback port with
// a root under work, and returns its address and how to stop it.
func startBenchRegistry(work string) (string, func()) {
	bin, err := exec.LookPath("docker-registry")
	check(err)
	root := filepath.Join(work, "registry")
	addr := "127.0.0.1:" + freePort()
	cfg := filepath.Join(work, "registry.yml")
	check(os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", root, addr)), 0o600))
	cmd := exec.Command(bin, "serve", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	check(cmd.Start())
	for range 100 {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr, func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(root) }
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	check(fmt.Errorf("docker-registry did not start on %s", addr))
	return "", nil
}
