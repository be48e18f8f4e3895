package criu

import (
	"context"
	"os"
	"os/exec"
	"testing"
)

// TestHardwareBreakpoints: the probe agrees with CRIU's own, on hosts
// where breakpoints fire and where they don't.
func TestHardwareBreakpoints(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (ptrace of a child is fine, but CRIU's check needs root)")
	}
	path, err := exec.LookPath("criu")
	if err != nil {
		t.Fatal("criu not in PATH: run 'make deps'")
	}
	got, err := HardwareBreakpoints()
	if err != nil {
		t.Fatal(err)
	}
	out, cerr := exec.CommandContext(context.Background(), path, "check", "--feature", "breakpoints").CombinedOutput()
	want := cerr == nil
	t.Logf("probe: %v; criu check --feature breakpoints: %s", got, out)
	if got != want {
		t.Errorf("probe says breakpoints work: %v; CRIU says %v (%s)", got, want, out)
	}
}

// TestBreakpointNeverHit: a breakpoint that never fires (here: on an
// address the program never runs) reads as "breakpoints don't work", the
// way a host whose debug registers are ignored behaves.
func TestBreakpointNeverHit(t *testing.T) {
	got, err := probeBreakpoint(func(uint64) uint64 { return 0x1000 })
	if err != nil {
		t.Fatal(err)
	}
	if got {
		t.Error("a breakpoint on an address never executed was reported as hit")
	}
}
