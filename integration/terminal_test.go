package integration

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ptyClient is ckptctl driven through a real pseudo-terminal, as a user
// at a terminal runs it.
type ptyClient struct {
	t    *testing.T
	pty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	seen int // output before this was matched already
	done chan error
}

// ptyCtl starts ckptctl args on a new terminal of size (0x0: none set).
func (d *daemon) ptyCtl(size pty.Winsize, args ...string) *ptyClient {
	d.t.Helper()
	cmd := exec.Command(bins.ckptctl, append([]string{"--socket", d.socket}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=dumb")
	f, err := pty.StartWithSize(cmd, &size)
	if err != nil {
		d.t.Fatal(err)
	}
	c := &ptyClient{t: d.t, pty: f, done: make(chan error, 1)}
	go c.read()
	go func() { c.done <- cmd.Wait() }()
	d.t.Cleanup(func() {
		cmd.Process.Kill()
		f.Close()
	})
	return c
}

// read keeps what the terminal shows.
func (c *ptyClient) read() {
	buf := make([]byte, 4096)
	for {
		n, err := c.pty.Read(buf)
		c.mu.Lock()
		c.out.Write(buf[:n])
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *ptyClient) send(s string) {
	c.t.Helper()
	if _, err := c.pty.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// expect waits for want in what the client showed since the last match.
func (c *ptyClient) expect(want string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		i := bytes.Index(c.out.Bytes()[c.seen:], []byte(want))
		if i >= 0 {
			c.seen += i + len(want)
		}
		c.mu.Unlock()
		if i >= 0 {
			return
		}
		if time.Now().After(deadline) {
			c.mu.Lock()
			out := c.out.Bytes()
			c.mu.Unlock()
			c.t.Fatalf("terminal never showed %q; it showed (the last 4 KiB):\n%s", want, out[max(0, len(out)-4096):])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exit waits for the client to end and returns its error.
func (c *ptyClient) exit() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(20 * time.Second):
		c.mu.Lock()
		defer c.mu.Unlock()
		c.t.Fatalf("ckptctl did not end; it showed:\n%s", c.out.String())
		return nil
	}
}

// detach types ctrl-p ctrl-q and checks the client leaves, saying so.
func (c *ptyClient) detach(name string) {
	c.t.Helper()
	c.send("\x10\x11")
	if err := c.exit(); err != nil {
		c.t.Fatalf("detach: ckptctl failed: %v", err)
	}
	c.expect("detached from " + name)
}

// ask has python print a value under a label and waits for the answer.
func (c *ptyClient) ask(label, expr, want string) {
	c.t.Helper()
	c.send("print('" + label + "', " + expr + ")\r")
	c.expect(label + " " + want)
}

// TestTerminalSession: a python3 REPL run with a terminal is attached at
// once, detaches with ctrl-p ctrl-q and keeps running; a checkpoint of it
// restores as a copy on a new terminal, with its variables and the
// window size it had, beside the original, which keeps its own; attach
// replays the scrollback; two clients attach at once and both see the
// output; a client's terminal resized is passed on; kill -9 of ckptd
// while clients are attached leaves the session running and the clients
// say so, and after a restart attach works again.
func TestTerminalSession(t *testing.T) {
	d := startDaemon(t)
	c := d.ptyCtl(pty.Winsize{Rows: 40, Cols: 100}, "run", "-it", "--name", "dbg", "--", "/usr/bin/python3", "-q")
	c.expect(">>> ")
	c.send("x = 41\r")
	c.ask("val", "x", "41")
	c.detach("dbg")

	d.must("create", "dbg", "--leave-running", "--name", "dbg1")
	c = d.ptyCtl(pty.Winsize{Rows: 50, Cols: 132}, "attach", "dbg")
	c.expect("val 41") // the scrollback
	c.send("x = 99\r")
	c.ask("val", "x", "99")
	c.ask("size", "tuple(__import__('shutil').get_terminal_size())", "(132, 50)")
	c.detach("dbg")

	d.must("restore", "dbg1", "--name", "dbg2")
	c = d.ptyCtl(pty.Winsize{}, "attach", "dbg2") // sets no size of its own
	c.expect("val 41\r\n>>> ")                    // the original's screen at the checkpoint
	c.ask("val", "x", "41")
	c.ask("size", "tuple(__import__('shutil').get_terminal_size())", "(100, 40)")
	c.detach("dbg2")

	c = d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "dbg")
	c.ask("val", "x", "99")
	other := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "dbg")
	other.expect("val 99") // the scrollback
	c.ask("both", "1+1", "2")
	other.expect("both 2")
	if ps := d.must("ps"); !strings.Contains(ps, "running, tty, 2 attached") || !strings.Contains(ps, "running, tty, 0 attached") {
		t.Errorf("ps does not show the sessions with their clients:\n%s", ps)
	}
	// The user's terminal changes size: ckptctl passes it on (SIGWINCH).
	if err := pty.Setsize(c.pty, &pty.Winsize{Rows: 60, Cols: 150}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session resized", func() bool {
		c.send("print('now', tuple(__import__('shutil').get_terminal_size()))\r")
		time.Sleep(200 * time.Millisecond)
		c.mu.Lock()
		defer c.mu.Unlock()
		return strings.Contains(c.out.String()[c.seen:], "now (150, 60)")
	})
	d.kill9()
	for _, cl := range []*ptyClient{c, other} {
		if err := cl.exit(); err == nil {
			t.Error("ckptctl attach ended without an error when ckptd was killed")
		}
		cl.expect("lost ckptd; the session keeps running")
	}
	d.start()
	c = d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "dbg")
	c.ask("val", "x", "99")
	c.detach("dbg")
	if logs := d.must("logs", "dbg"); !strings.Contains(logs, "val 99") {
		t.Errorf("logs of the session lack its output:\n%s", logs)
	}
}

// TestAttachRefusals: attach to a workload without a terminal, to an
// unknown name, and from a client whose stdin is no terminal: one line
// each, and the sessions are untouched.
func TestAttachRefusals(t *testing.T) {
	d := startDaemon(t)
	d.runLoad("plain", 16)
	d.mustFailAll(t, []failCase{
		{want: "has no terminal", args: []string{"attach", "plain"}},
		{want: "not found", args: []string{"attach", "nosuch"}},
		{want: "needs a terminal", args: []string{"run", "-it", "--name", "notty", "--", "/bin/sh"}},
		{want: "-i needs -t", args: []string{"run", "-i", "--name", "notty", "--", "/bin/sh"}},
	})
	d.must("run", "-t", "-d", "--name", "sh", "--", "/bin/sh")
	d.mustFail("needs a terminal", "attach", "sh")
	if w := d.workload("sh"); !w.Running {
		t.Errorf("a refused attach touched the session: %+v", w)
	}

	// A session that outlives its holder (killed) is shown as such, and
	// attach says why it cannot.
	d.must("run", "-t", "-d", "--name", "nohup", "--", "/bin/sh", "-c", "trap '' HUP; while :; do sleep 1; done")
	sock := d.terminalSocket("nohup")
	for pid, s := range d.holders() {
		if s == sock {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	waitFor(t, "the holder to end", func() bool { return !slices.Contains(slices.Collect(maps.Values(d.holders())), sock) })
	out, errOut, err := d.ctl("ps")
	if err != nil || !strings.Contains(out, "running, tty lost") ||
		!strings.Contains(errOut, "warning: nohup: the session's terminal holder does not answer") {
		t.Fatalf("ps with a holder gone: %v\n%s%s", err, out, errOut)
	}
	c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "nohup")
	if err := c.exit(); err == nil {
		t.Fatal("attach to a session whose holder is gone succeeded")
	}
	c.expect("the session's terminal holder does not answer")
	if w := d.workload("nohup"); !w.Running {
		t.Errorf("the session ended with its holder: %+v", w)
	}
}

// TestAttachSlowClient: a client whose terminal stops reading falls behind
// the session's output; the holder drops it past its queue, and the
// client, once it reads again, says so; the session never waited for it
// (its log has all its output) and runs on.
func TestAttachSlowClient(t *testing.T) {
	d := startDaemon(t)
	d.must("run", "-t", "-d", "--name", "loud", "--", "/usr/bin/python3", "-q")
	talker := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "loud")
	talker.ask("ready", "1", "1")

	// A client whose terminal nobody reads: its ckptctl blocks on it.
	cmd := exec.Command(bins.ckptctl, "--socket", d.socket, "attach", "loud")
	cmd.Env = append(os.Environ(), "TERM=dumb")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); f.Close() })
	slow := &ptyClient{t: t, pty: f, done: make(chan error, 1)}
	go func() { slow.done <- cmd.Wait() }()
	waitFor(t, "two clients", func() bool { return strings.Contains(d.must("ps"), "running, tty, 2 attached") })

	// More than the gRPC windows, the sockets and the holder's queue hold,
	// written once the talker has left.
	talker.send("import time; time.sleep(1); n = sum(print('y' * 1000000) or 1 for i in range(40))\r")
	talker.detach("loud")
	go slow.read()
	slow.expect("this client fell more than 4 MiB behind the session's output and was dropped; the session keeps running")
	if err := slow.exit(); err == nil {
		t.Error("the dropped client exited 0")
	}
	// Clients never hold the session up: the whole flood is in its log.
	logPath := d.workload("loud").Ref.LogPath
	waitFor(t, "the flood in the session's log", func() bool {
		st, err := os.Stat(logPath)
		return err == nil && st.Size() > 40_000_000
	})
	talker = d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", "loud")
	talker.ask("still", "n", "40")
	talker.detach("loud")
}

// TestContainerWithTerminal: a container started with a terminal (ctr
// run -t) is refused before it is frozen, saying why, and runs on.
func TestContainerWithTerminal(t *testing.T) {
	x := startContainerd(t, true)
	d := startDaemonAt(t, t.TempDir()+"/state", x.in.Address)
	var out syncBuffer
	if err := x.in.RunTTY(x.ctx(), "default", testImage, "tty", counterScript, &out); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter on the terminal", func() bool { return strings.Contains(out.String(), "2 kept") })
	c := d.create("ctr:tty")
	counts, _ := counterLines(strings.ReplaceAll(out.String(), "\r", ""))
	last := counts[len(counts)-1]
	d.must("restore", c.Name)
	restored := filepath.Join(d.root, "containers", "default", "tty", "output.log")
	waitCount(t, restored, last+2)
	counts, markers := counterLines(strings.ReplaceAll(readFile(restored), "\r", ""))
	if counts[0] != last+1 || markers[0] != "kept" {
		t.Errorf("restored terminal container starts %d %q, want %d \"kept\"", counts[0], markers[0], last+1)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMigrateTerminalSession: a python3 session moves to another host;
// there it runs on a new terminal of the size it had, and a client
// attached on the destination finds its variables. It comes back by
// pre-copy, its live rounds dumped with the terminal held outside, and
// keeps them.
func TestMigrateTerminalSession(t *testing.T) {
	a, b := twoHosts(t)
	src, dst := a.ckptd("", ""), b.ckptd("", "")
	c := src.ptyCtl(pty.Winsize{Rows: 30, Cols: 90}, "run", "-it", "--name", "dbg", "--", "/usr/bin/python3", "-q")
	c.expect(">>> ")
	c.send("x = 7\r")
	c.ask("val", "x", "7")
	c.detach("dbg")
	pid := src.workload("dbg").Ref.PID

	src.migrate("dbg", "--to", b.addr())
	waitFor(t, "the source's session gone", func() bool { return !alive(pid) })
	if ps := dst.must("ps"); !strings.Contains(ps, "running, tty, 0 attached") {
		t.Errorf("destination ps does not show the session:\n%s", ps)
	}
	c = dst.ptyCtl(pty.Winsize{}, "attach", "dbg")
	c.ask("val", "x", "7")
	c.ask("size", "tuple(__import__('shutil').get_terminal_size())", "(90, 30)")
	c.send("x = 8\r")
	c.ask("val", "x", "8")
	c.detach("dbg")

	r := dst.migrate("dbg", "--to", a.addr(), "--precopy")
	if len(r.Rounds) < 2 {
		t.Errorf("back by pre-copy: rounds %+v", r.Rounds)
	}
	c = src.ptyCtl(pty.Winsize{}, "attach", "dbg")
	c.ask("val", "x", "8")
	c.detach("dbg")
}

// TestShellJobRestore: a python3 REPL that a shell started on a terminal
// ckptd does not hold, checkpointed by PID as a shell job, restores onto a
// new terminal session whose holder leads it as the shell did: restore
// says how to attach, the job keeps its variables, owns the terminal
// (ctrl-c interrupts it, its window is the attached client's), ps shows
// it, and it runs on after ckptd is killed. A damaged checkpoint of it is
// refused and leaves no session behind.
func TestShellJobRestore(t *testing.T) {
	d := startDaemon(t)
	py, ck := shellJob(t, d)

	// Refused under its new session's holder, a damaged checkpoint leaves
	// nothing running, and the holder ends with the session.
	corrupt(t, d, ck.ID, 0)
	d.mustFail("does not match its checksum", "restore", "job1")
	sock := filepath.Join(d.root, "terminals", strconv.Itoa(py), "tty.sock")
	waitFor(t, "the refused restore's terminal holder to end", func() bool {
		_, err := os.Stat(sock)
		return errors.Is(err, os.ErrNotExist) && !alive(py)
	})
	corrupt(t, d, ck.ID, 0) // repaired

	out := d.must("restore", "job1")
	if want := fmt.Sprintf("ckptctl --socket %s attach %d", d.socket, py); !strings.Contains(out, want) {
		t.Fatalf("restore did not say how to attach (%q):\n%s", want, out)
	}
	if ps := d.must("ps"); !strings.Contains(ps, fmt.Sprintf("pid:%d", py)) || !strings.Contains(ps, "running, tty, 0 attached") {
		t.Fatalf("ps does not show the restored job on its terminal:\n%s", d.must("ps"))
	}
	jobSize(t, py, 33, 77) // its old terminal's, until a client attaches
	c := d.ptyCtl(pty.Winsize{Rows: 41, Cols: 99}, "attach", strconv.Itoa(py))
	c.expect(">>> ") // the scrollback: the prompt the restored job printed
	c.ask("x", "x", "41")
	c.send("import os\r")
	c.ask("size", "tuple(os.get_terminal_size())", "(99, 41)")
	c.ask("fg", "os.tcgetpgrp(0) == os.getpgrp()", "True")
	c.send("while True: pass\r\r")
	time.Sleep(300 * time.Millisecond)
	c.send("\x03")
	c.expect("KeyboardInterrupt")
	c.ask("after", "x + 1", "42")

	d.kill9()
	c.expect("lost ckptd; the session keeps running")
	d.start()
	c = d.ptyCtl(pty.Winsize{Rows: 41, Cols: 99}, "attach", strconv.Itoa(py))
	c.ask("again", "x", "41")
	c.detach(strconv.Itoa(py))
	if !alive(py) {
		t.Fatalf("the restored job ended with its client")
	}

	// Again and again: the restored job checkpoints (a shell job without
	// saying so: its session is ckptd's) and restores onto a new session.
	d.create(strconv.Itoa(py), "--name", "job2")
	d.must("restore", "job2")
	jobSize(t, py, 41, 99) // the last client's
	c = d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", strconv.Itoa(py))
	c.ask("third", "x * 2", "82")
}

// jobSize checks the window size of pid's terminal (its stdin).
func jobSize(t *testing.T, pid int, rows, cols uint16) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd/0", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ws, err := pty.GetsizeFull(f)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Rows != rows || ws.Cols != cols {
		t.Fatalf("the restored job's terminal is %dx%d, want %dx%d", ws.Rows, ws.Cols, rows, cols)
	}
}

// shellJob starts python3 -q under a job-control shell on a terminal of
// the test's own, sets x = 41 in it, and checkpoints it by PID as a
// shell job (it stops).
func shellJob(t *testing.T, d *daemon) (int, checkpoint) {
	// On d's host, holding no descriptor the test's own caller left open
	// (they may name another host's mounts).
	argv := append(append([]string{}, d.wrap...), "/usr/bin/python3", "-c",
		"import os; os.closerange(3, 65536); os.execv('/bin/sh', ['sh', '-m', '-c', '/usr/bin/python3 -q; echo shell-done'])")
	shell := exec.Command(argv[0], argv[1:]...)
	shell.Env = append(os.Environ(), "TERM=dumb")
	tty, err := pty.StartWithSize(shell, &pty.Winsize{Rows: 33, Cols: 77})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shell.Process.Kill(); shell.Wait(); tty.Close() })
	user := &ptyClient{t: t, pty: tty, done: make(chan error, 1)}
	go user.read()
	user.expect(">>> ")
	var py int
	waitFor(t, "python3 under the shell", func() bool {
		kids := strings.Fields(readFile(fmt.Sprintf("/proc/%d/task/%d/children", shell.Process.Pid, shell.Process.Pid)))
		if len(kids) == 1 {
			py, _ = strconv.Atoi(kids[0])
		}
		return py > 0
	})
	user.send("x = 41\r")
	user.expect(">>> ")
	ck := d.create(strconv.Itoa(py), "--shell-job", "--name", "job1")
	user.expect("shell-done")
	return py, ck
}

// TestTerminalHolderFailures: a terminal holder that is missing, or that
// never serves, fails run -t and a shell job's restore with one line
// each; nothing is left running, and the checkpoint restores once the
// holder is back.
func TestTerminalHolderFailures(t *testing.T) {
	d := startDaemonWith(t, "--terminal-holder", "/nonexistent/ckptd-term")
	py, _ := shellJob(t, d)
	d.mustFail("terminal holder /nonexistent/ckptd-term", "run", "-t", "-d", "--name", "sh", "--", "/bin/sh")
	d.mustFail("terminal holder /nonexistent/ckptd-term", "restore", "job1")
	d.stop()
	d.args = []string{"--terminal-holder", "/bin/true"} // exits at once
	d.start()
	d.mustFail("did not start listening", "run", "-t", "-d", "--name", "sh", "--", "/bin/sh")
	d.mustFail("did not report its program's start", "restore", "job1")
	for _, tg := range d.ps() {
		if tg.Running {
			t.Errorf("a failed start left %+v running", tg.Ref)
		}
	}
	if alive(py) {
		t.Fatalf("a failed restore left pid %d running", py)
	}
	d.stop()
	d.args = nil
	d.start()
	d.must("restore", "job1")
	c := d.ptyCtl(pty.Winsize{Rows: 24, Cols: 80}, "attach", strconv.Itoa(py))
	c.ask("x", "x", "41")
}
