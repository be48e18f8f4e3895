package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// daemon is one ckptd on a private state root and socket.
type daemon struct {
	t          *testing.T
	root       string
	socket     string
	containerd string
	cmd        *exec.Cmd
	log        *bytes.Buffer
	// wrap runs ckptd inside another command (a network and mount
	// namespace), and args are extra flags; both empty for a plain daemon.
	wrap, args []string
	env        []string // added to ckptd's environment (failpoints)
	bin        string   // the ckptd binary; empty: the one TestMain built
}

// startDaemon starts a ckptd whose containerd socket leads nowhere, so that
// no test ever sees (or cleans up) the host's containers.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonWith(t)
}

// strayChecked holds the tests that check for strays when they end.
var strayChecked = map[*testing.T]bool{}

// checkStraysAfter fails t if, once all its cleanups have run, a process
// still runs a binary the tests built (a workload or copy t did not end).
// Registered before t's first daemon, it runs after every daemon's cleanup.
func checkStraysAfter(t *testing.T) {
	if strayChecked[t] {
		return
	}
	strayChecked[t] = true
	t.Cleanup(func() {
		delete(strayChecked, t)
		if left := endStrays(filepath.Dir(bins.memload)); left != "" {
			t.Errorf("left running (now killed): %s", left)
		}
	})
}

// startDaemonWith starts a ckptd as startDaemon does, with extra flags.
func startDaemonWith(t *testing.T, args ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	return startDaemonAt(t, filepath.Join(dir, "state"), filepath.Join(dir, "no-containerd.sock"), args...)
}

// startDaemonAt starts a ckptd on state root root, talking to the
// containerd at containerd, with extra flags.
func startDaemonAt(t *testing.T, root, containerd string, args ...string) *daemon {
	t.Helper()
	checkStraysAfter(t)
	d := &daemon{t: t, root: root, socket: filepath.Join(t.TempDir(), "ckptd.sock"), containerd: containerd, args: args}
	d.start()
	t.Cleanup(d.cleanup)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	// The tests' workloads run as root, so their checkpoints, once they
	// come back from outside (an import, a pull, a migration), need
	// --trust-root; TestRootFromOutside turns it off (--trust-root=false).
	bin := d.bin
	if bin == "" {
		bin = bins.ckptd
	}
	argv := append([]string{bin, "--root", d.root, "--socket", d.socket, "--log-level", "debug",
		"--containerd", d.containerd, "--trust-root"}, d.args...)
	argv = append(append([]string{}, d.wrap...), argv...)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.Env = append(os.Environ(), d.env...)
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start ckptd: %v", err)
	}
	for i := 0; i < 400; i++ { // start-up may wait for a dead daemon's CRIU to roll back
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("ckptd did not come up:\n%s", d.log)
}

// kill9 kills the daemon as a crash would.
func (d *daemon) kill9() {
	d.cmd.Process.Kill()
	d.cmd.Wait()
}

// stop ends the daemon as an operator would (SIGTERM).
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

// cleanup ends the workloads this daemon ran, by PID, then the daemon.
// Containers are left to the containerd instance's own cleanup.
func (d *daemon) cleanup() {
	if d.cmd.ProcessState != nil && (d.t.Failed() || netnsLeft(d) > 0) {
		// A test that failed, or left networks, with its ckptd killed:
		// start it again to end what it runs and let go of them, rather
		// than leave them to the next test.
		d.start()
	}
	if d.cmd.ProcessState == nil {
		var killed []int
		for _, t := range d.ps() {
			if t.Running && t.Ref.Kind != "container" {
				syscall.Kill(t.Ref.PID, syscall.SIGKILL)
				killed = append(killed, t.Ref.PID)
			}
			if t.Hibernated {
				d.ctl("kill", t.Ref.Name)
			}
		}
		// Wait until they let go of their files (the state root may be a
		// mount the test removes next).
		deadline := time.Now().Add(10 * time.Second)
		for _, pid := range killed {
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		// And until ckptd let go of their networks: addresses, rules.
		for netnsLeft(d) > 0 && time.Now().Before(deadline) {
			d.ps()
			time.Sleep(50 * time.Millisecond)
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
		if n := netnsLeft(d); n > 0 {
			d.t.Errorf("%d network namespaces left under %s after every workload ended", n, d.root)
		}
	}
	if strings.Contains(d.log.String(), "DATA RACE") {
		d.t.Errorf("ckptd (built with -race) found a data race")
	}
	if d.t.Failed() {
		d.t.Logf("ckptd log:\n%s", d.log)
	}
}

// ctlDeadline bounds every ckptctl call of a test: a hang is reported
// with what explains it instead of stalling the suite.
const ctlDeadline = 3 * time.Minute

// ctl runs ckptctl against this daemon.
func (d *daemon) ctl(args ...string) (stdout, stderr string, err error) {
	return d.ctlIn("", args...)
}

// ctlIn runs ckptctl in directory dir ("": the test's), which is where
// `ckptctl run` starts a workload.
func (d *daemon) ctlIn(dir string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(bins.ckptctl, append([]string{"--socket", d.socket}, args...)...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	timer := time.AfterFunc(ctlDeadline, func() {
		d.t.Errorf("ckptctl %s: no answer within %s; killed it\n%s", strings.Join(args, " "), ctlDeadline, d.diagnose())
		cmd.Process.Kill()
	})
	err = cmd.Wait()
	timer.Stop()
	return o.String(), e.String(), err
}

// diagnose describes what may hold this daemon up: every criu and runc
// process with its state and wait channel, and the last lines of the CRIU
// logs under the state root.
func (d *daemon) diagnose() string {
	var b strings.Builder
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat := readFile(fmt.Sprintf("/proc/%d/stat", pid))
		if !strings.Contains(stat, "(criu)") && !strings.Contains(stat, "(runc)") {
			continue
		}
		wchan := readFile(fmt.Sprintf("/proc/%d/wchan", pid))
		fmt.Fprintf(&b, "process: %s wchan=%s\n", strings.TrimSpace(stat[:min(len(stat), 60)]), wchan)
	}
	logs, _ := filepath.Glob(filepath.Join(d.root, "*", "*", "*.log"))
	for _, l := range logs {
		fmt.Fprintf(&b, "%s:\n%s\n", l, tail(readFile(l), 5))
	}
	return b.String()
}

// must runs ckptctl and fails the test if it fails.
func (d *daemon) must(args ...string) string {
	d.t.Helper()
	return d.mustIn("", args...)
}

// mustIn is must run in directory dir ("": the test's).
func (d *daemon) mustIn(dir string, args ...string) string {
	d.t.Helper()
	out, errOut, err := d.ctlIn(dir, args...)
	if err != nil {
		d.t.Fatalf("ckptctl %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// mustFail runs ckptctl, expects failure with exactly one line on stderr
// containing want, and returns that line.
func (d *daemon) mustFail(want string, args ...string) string {
	d.t.Helper()
	_, errOut, err := d.ctl(args...)
	if err == nil {
		d.t.Fatalf("ckptctl %s succeeded, want failure containing %q", strings.Join(args, " "), want)
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		d.t.Fatalf("ckptctl %s: stderr %q, want one line containing %q", strings.Join(args, " "), errOut, want)
	}
	return lines[0]
}

// failCase is one bad command and the text its error line must hold.
type failCase struct {
	want string
	args []string
}

// mustFailAll runs each case as a subtest of t with mustFail.
func (d *daemon) mustFailAll(t *testing.T, cases []failCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d.t = t
			d.mustFail(tc.want, tc.args...)
		})
	}
	d.t = t
}

type target struct {
	Ref struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		PID     int    `json:"pid"`
		LogPath string `json:"log_path"`
	} `json:"ref"`
	Running      bool     `json:"running"`
	Terminal     bool     `json:"terminal"` // a terminal session ckptd holds
	RestoredFrom string   `json:"restored_from"`
	InDoubt      string   `json:"in_doubt"`
	Exit         string   `json:"exit"`    // how it ended, once it has
	Network      string   `json:"network"` // its own network: private or none
	IP           string   `json:"ip"`
	Ports        []string `json:"ports"`
	Hibernated   bool     `json:"hibernated"`
	WakeError    string   `json:"wake_error"`
	Persist      bool     `json:"persist"`
	PersistCkpt  string   `json:"persist_checkpoint"`
	PersistError string   `json:"persist_error"`
	PersistGroup string   `json:"persist_group"`
}

func (d *daemon) ps() []target {
	out, _, err := d.ctl("ps", "-a", "-o", "json")
	if err != nil {
		return nil
	}
	var ts []target
	json.Unmarshal([]byte(out), &ts)
	return ts
}

func (d *daemon) workload(name string) target {
	d.t.Helper()
	for _, t := range d.ps() {
		if t.Ref.Kind == "workload" && t.Ref.Name == name {
			return t
		}
	}
	d.t.Fatalf("workload %s not in ps", name)
	return target{}
}

type checkpoint struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Parent string `json:"parent"`
	Target struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"target"`
	Stats struct {
		FrozenTime int64 `json:"frozen_time"`
	} `json:"stats"`
	Files       map[string]any `json:"files"`
	State       string         `json:"state"`
	Size        int64          `json:"size,string"`
	Incremental *struct {
		Parent      string `json:"parent"`
		SharedBytes int64  `json:"shared_bytes,string"`
	} `json:"incremental"`
}

func (d *daemon) checkpoints() []checkpoint {
	d.t.Helper()
	var cs []checkpoint
	if err := json.Unmarshal([]byte(d.must("ls", "-o", "json")), &cs); err != nil {
		d.t.Fatalf("ls -o json: %v", err)
	}
	return cs
}

// checkpoint returns the listed checkpoint id (the test fails without it).
func (d *daemon) checkpoint(id string) checkpoint {
	d.t.Helper()
	for _, c := range d.checkpoints() {
		if c.ID == id {
			return c
		}
	}
	d.t.Fatalf("checkpoint %s is not listed", id)
	return checkpoint{}
}

func (d *daemon) create(args ...string) checkpoint {
	d.t.Helper()
	var c checkpoint
	out := d.must(append([]string{"create", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		d.t.Fatalf("create output %q: %v", out, err)
	}
	return c
}

// runLoad starts memload as a workload and waits until it filled its memory.
func (d *daemon) runLoad(name string, mib int, extra ...string) target {
	d.t.Helper()
	return d.runLoadIn("", name, mib, extra...)
}

// runLoadIn is runLoad with the workload working in dir.
func (d *daemon) runLoadIn(dir, name string, mib int, extra ...string) target {
	d.t.Helper()
	args := append([]string{"run", "--name", name, "--", bins.memload, "--mib", strconv.Itoa(mib)}, extra...)
	if _, errOut, err := d.ctlIn(dir, args...); err != nil {
		d.t.Fatalf("ckptctl %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	w := d.workload(name)
	waitFor(d.t, fmt.Sprintf("%s ready", name), func() bool { return strings.Contains(readFile(w.Ref.LogPath), "ready") })
	return w
}

// status is one status line of memload.
type status struct {
	Counter, Pipe, Unix int
	Hash                string
}

var statusRE = regexp.MustCompile(`status counter=(\d+) pipe=(\d+) unix=(\d+) hash=([0-9a-f]+)`)

// loadStatus asks the memload with host PID pid for a status line and
// reads it from its log.
func loadStatus(t *testing.T, pid int, logPath string) status {
	t.Helper()
	st, _ := statusUnless(t, pid, logPath, func() bool { return false })
	return st
}

// statusUnless is loadStatus that gives up, returning false, once stop
// says the answer will never come.
func statusUnless(t *testing.T, pid int, logPath string, stop func() bool) (status, bool) {
	t.Helper()
	before := len(statusRE.FindAllString(readFile(logPath), -1))
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil && !stop() {
		t.Fatalf("signal memload %d: %v", pid, err)
	}
	var m []string
	waitFor(t, "status line", func() bool {
		all := statusRE.FindAllStringSubmatch(readFile(logPath), -1)
		if len(all) > before {
			m = all[len(all)-1]
			return true
		}
		return stop()
	})
	if m == nil {
		return status{}, false
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return status{Counter: n(m[1]), Pipe: n(m[2]), Unix: n(m[3]), Hash: m[4]}, true
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs and is not stopped or a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "T" && f[0] != "t"
}

// continues checks that after is the same workload state as before, moved on.
func continues(t *testing.T, before, after status) {
	t.Helper()
	if after.Hash != before.Hash {
		t.Errorf("memory hash changed: %s -> %s", before.Hash, after.Hash)
	}
	if after.Counter < before.Counter || after.Pipe < before.Pipe || after.Unix < before.Unix {
		t.Errorf("state went backwards: %+v -> %+v", before, after)
	}
}

// unmountRetrying unmounts a test's tmpfs. A process the test killed can
// hold it for a moment after it stops counting as alive, so "busy" is
// retried for a while before it fails the test.
func unmountRetrying(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Unmount(dir, 0)
		if err == nil {
			return
		}
		if err != unix.EBUSY || time.Now().After(deadline) {
			t.Errorf("unmount %s: %v", dir, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// corrupt flips the byte at off of a page image of checkpoint id.
func corrupt(t *testing.T, d *daemon, id string, off int64) {
	t.Helper()
	flipByte(t, filepath.Join(d.root, "checkpoints", id), off)
}

// flipByte inverts one byte of the first page image in dir; a second call
// repairs it.
func flipByte(t *testing.T, dir string, off int64) {
	t.Helper()
	pages, _ := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	if len(pages) == 0 {
		t.Fatal("no page images in checkpoint")
	}
	flipFileByte(t, pages[0], off)
}

// flipFileByte inverts the byte at off in the file at path.
func flipFileByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
