// Command ckptd-term holds one terminal session for ckptd: the master
// side of its pseudo-terminal (descriptor 3), its log and scrollback, and
// a unix socket for attached clients. ckptd starts it; it lives until the
// session ends, whatever happens to ckptd.
//
// With --run, it also leads the session: descriptor 4 is the slave side,
// which it takes as its controlling terminal, 5 is where it reports the
// PID of the program after "--", which it starts on the terminal with
// its --run-files descriptors 6, 7, ... as the program's 3, 4, ...
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/ckptd/ckptd/term"
)

func main() {
	sock := flag.String("socket", "", "unix socket to serve clients on")
	logPath := flag.String("log", "", "file the session's output is appended to")
	run := flag.Bool("run", false, "lead the session and start the program after -- in it")
	runFiles := flag.Int("run-files", 0, "with --run: descriptors from 6 on the program gets")
	scrollback := flag.String("scrollback", "", "file whose last bytes start the scrollback (a restored copy's)")
	flag.Parse()
	if err := serve(*sock, *logPath, *scrollback, *run, *runFiles, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "ckptd-term:", err)
		os.Exit(1)
	}
}

func serve(sock, logPath, scrollback string, run bool, runFiles int, argv []string) error {
	if sock == "" || logPath == "" {
		return fmt.Errorf("--socket and --log are required")
	}
	// A session outlives ckptd's terminal and its stops.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// What it starts gets only the descriptors it is given.
	for fd := 3; fd < 6+runFiles; fd++ {
		syscall.CloseOnExec(fd)
	}
	master := os.NewFile(3, "ptmx")
	if run {
		if err := lead(argv, runFiles, log); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		return err
	}
	h := term.NewHolder(master, out, log)
	if scrollback != "" {
		p, err := readTail(scrollback, term.ScrollbackBytes)
		if err != nil {
			return err
		}
		h.Seed(p)
	}
	return h.Run(l)
}

// readTail reads the last n bytes of the file at path.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.NewSectionReader(f, max(0, st.Size()-n), n))
}

// lead starts argv on the session's terminal and reaps it when it ends.
func lead(argv []string, nfiles int, log *slog.Logger) error {
	var files []*os.File
	for fd := 6; fd < 6+nfiles; fd++ {
		files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
	}
	wait, err := term.Lead(os.NewFile(4, "pts"), os.NewFile(5, "report"), argv, files, os.Stderr)
	if err != nil {
		return err
	}
	go func() {
		err := wait()
		log.Info("program ended", "argv", argv, "status", fmt.Sprint(err))
	}()
	return nil
}
