// Command ckptd-term holds one terminal session for ckptd: the master
// side of its pseudo-terminal (descriptor 3), its log and scrollback, and
// a unix socket for attached clients. ckptd starts it; it lives until the
// session ends, whatever happens to ckptd.
package main

import (
	"flag"
	"fmt"
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
	flag.Parse()
	if err := run(*sock, *logPath); err != nil {
		fmt.Fprintln(os.Stderr, "ckptd-term:", err)
		os.Exit(1)
	}
}

func run(sock, logPath string) error {
	if sock == "" || logPath == "" {
		return fmt.Errorf("--socket and --log are required")
	}
	// A session outlives ckptd's terminal and its stops.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	master := os.NewFile(3, "ptmx")
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
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	return term.NewHolder(master, out, log).Run(l)
}
