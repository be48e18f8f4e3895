package workload

import (
	"fmt"
	"os"
	"syscall"
)

// gateArg0 is argv[0] of ckptd started as a launch gate.
const gateArg0 = "ckptd-gate"

// gateFD is the gate's end of the pipe ckptd opens it with.
const gateFD = 3

// IsGate reports whether args (os.Args) start ckptd as a launch gate; its
// main then calls Gate before anything else.
func IsGate(args []string) bool { return len(args) > 2 && args[0] == gateArg0 }

// Gate is a launched workload before it runs: it waits for ckptd to record
// its PID, then becomes the workload (same PID) by exec. If ckptd ends
// first, the pipe closes unopened and the gate exits: a workload ckptd
// never recorded never runs. args are os.Args: gate, path, argv...
func Gate(args []string) {
	gate := os.NewFile(gateFD, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		os.Exit(1)
	}
	gate.Close()
	err := syscall.Exec(args[1], args[2:], os.Environ())
	fmt.Fprintf(os.Stderr, "start %s: %v\n", args[2], err)
	os.Exit(127)
}
