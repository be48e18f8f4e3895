// Command memload is the workload the tests and benchmarks checkpoint: it
// fills N MiB with a deterministic pattern, counts, passes messages through
// a pipe and a unix socket pair, can hold a file lock, and on SIGUSR1
// prints one status line with a SHA-256 of its memory. On SIGUSR2 it
// rewrites the next -churn percent of its memory (what an incremental
// checkpoint then stores) and prints "churned gen=N".
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mib := flag.Int("mib", 64, "MiB of memory to fill")
	lock := flag.String("lock", "", "file to hold an exclusive flock on")
	threads := flag.Int("threads", 2, "extra busy threads")
	churn := flag.Int("churn", 5, "percent of the memory each SIGUSR2 rewrites")
	noise := flag.Bool("incompressible", false, "fill with seeded pseudo-random bytes, which no compressor shrinks")
	flag.Parse()

	mem := make([]byte, *mib<<20)
	if *noise {
		rand.NewChaCha8([32]byte{'m', 'e', 'm', 'l', 'o', 'a', 'd'}).Read(mem)
	} else {
		for i := range mem {
			mem[i] = byte(i*31 + i>>12)
		}
	}
	if *lock != "" {
		f, err := os.OpenFile(*lock, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			fail(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			fail(fmt.Errorf("flock %s: %w", *lock, err))
		}
	}
	var counter, pipeMsgs, unixMsgs atomic.Int64
	go count(&counter)
	go pipeLoop(&pipeMsgs)
	go unixLoop(&unixMsgs)
	for range *threads {
		go func() {
			for {
				time.Sleep(time.Millisecond)
			}
		}()
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	fmt.Printf("ready pid=%d mib=%d\n", os.Getpid(), *mib)
	gen := 0
	for s := range sig {
		if s == syscall.SIGUSR2 {
			gen++
			rewrite(mem, gen, *churn)
			fmt.Printf("churned gen=%d\n", gen)
			continue
		}
		sum := sha256.Sum256(mem)
		fmt.Printf("status counter=%d pipe=%d unix=%d hash=%s gen=%d\n",
			counter.Load(), pipeMsgs.Load(), unixMsgs.Load(), hex.EncodeToString(sum[:]), gen)
	}
}

// rewrite changes every byte of the gen-th slice of percent of mem, the
// slices taking turns.
func rewrite(mem []byte, gen, percent int) {
	n := len(mem) * percent / 100
	if n == 0 {
		return
	}
	slices := len(mem) / n
	start := (gen % slices) * n
	for i := start; i < start+n; i++ {
		mem[i] = byte(i*7 + gen)
	}
}

func count(c *atomic.Int64) {
	for {
		time.Sleep(10 * time.Millisecond)
		c.Add(1)
	}
}

// pipeLoop checks that every message through a pipe arrives in order.
func pipeLoop(n *atomic.Int64) {
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		fail(err)
	}
	relay(p[1], p[0], n)
}

func unixLoop(n *atomic.Int64) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		fail(err)
	}
	relay(fds[0], fds[1], n)
}

func relay(w, r int, n *atomic.Int64) {
	buf := make([]byte, 8)
	for i := int64(0); ; i++ {
		out := []byte(fmt.Sprintf("%08d", i%100000000))
		if _, err := syscall.Write(w, out); err != nil {
			fail(err)
		}
		if _, err := syscall.Read(r, buf); err != nil {
			fail(err)
		}
		if string(buf) != string(out) {
			fail(fmt.Errorf("message %d: got %q", i, buf))
		}
		n.Add(1)
		time.Sleep(10 * time.Millisecond)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "memload:", err)
	os.Exit(1)
}
