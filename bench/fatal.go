package main

import (
	"fmt"
	"log"
	"path/filepath"
	"strings"
)

// cleanups undo, newest first, what a failed benchmark would leave: the
// ckptds and workloads it started.
var cleanups []func()

func atFatal(f func()) { cleanups = append(cleanups, f) }

// fatalf stops what the benchmark started, says why it failed and exits.
func fatalf(format string, args ...any) {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	log.Fatalf(format, args...)
}

// criuErrors is the error lines of the log a failed criu command line
// (-D DIR -o LOG) wrote, so that a failed benchmark says why.
func criuErrors(args []string) string {
	var dir, logName string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-D":
			dir = args[i+1]
		case "-o":
			logName = args[i+1]
		}
	}
	path := filepath.Join(dir, logName)
	var lines []string
	for _, l := range strings.Split(readFile(path), "\n") {
		if strings.Contains(l, "Error") {
			lines = append(lines, l)
		}
	}
	return fmt.Sprintf(" (log %s: %s)", path, strings.Join(lines, "; "))
}
