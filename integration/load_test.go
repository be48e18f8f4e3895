package integration

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadDuration bounds TestLoad; CKPTD_LOAD overrides it (make faults).
func loadDuration(t *testing.T) time.Duration {
	if s := os.Getenv("CKPTD_LOAD"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CKPTD_LOAD=%q: %v", s, err)
		}
		return d
	}
	return 20 * time.Second
}

type footprint struct {
	Goroutines int64 `json:"goroutines,string"`
	OpenFDs    int64 `json:"open_fds,string"`
	RSSBytes   int64 `json:"rss_bytes,string"`
}

func (d *daemon) footprint() footprint {
	d.t.Helper()
	var f footprint
	if err := json.Unmarshal([]byte(d.must("version", "-o", "json")), &f); err != nil {
		d.t.Fatal(err)
	}
	return f
}

// TestLoad: 16 clients for a bounded time create, restore, list, inspect
// and remove checkpoints of four workloads, racing one another on the same
// targets and checkpoints. Only the documented refusals may fail a
// request; afterwards ckptd holds no more goroutines or files than before
// (within a margin), its memory is bounded, and no work dir or staging
// entry is left.
func TestLoad(t *testing.T) {
	d := startDaemon(t)
	for i := range 4 {
		d.runLoadIn(t.TempDir(), fmt.Sprintf("w%d", i), 16)
	}
	for i := range 4 {
		d.create(fmt.Sprintf("w%d", i), "--leave-running")
	}
	before := d.footprint()
	// A checkpoint with descendants, or in use, is not removed; one removed
	// meanwhile is not found.
	allowed := []string{"has descendants", "is in use", "not found"}
	var mu sync.Mutex
	counts := map[string]int{}
	var unexpected []string
	deadline := time.Now().Add(loadDuration(t))
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 42))
			for n := 0; time.Now().Before(deadline); n++ {
				op, args := d.loadOp(r, c, n)
				_, stderr, err := d.ctl(args...)
				mu.Lock()
				counts[op]++
				if err != nil {
					ok := false
					for _, a := range allowed {
						ok = ok || strings.Contains(stderr, a)
					}
					if ok {
						counts[op+" refused"]++
					} else {
						unexpected = append(unexpected, fmt.Sprintf("%s: %s", strings.Join(args, " "), stderr))
					}
				}
				mu.Unlock()
				if op == "restore" && err == nil {
					d.ctl("kill", args[3])
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("requests: %v", counts)
	for _, u := range unexpected {
		t.Errorf("unexpected failure: %s", u)
	}
	time.Sleep(time.Second) // let the last copies' exits be reaped
	after := d.footprint()
	t.Logf("footprint before %+v, after %+v", before, after)
	if after.Goroutines > before.Goroutines+5 || after.OpenFDs > before.OpenFDs+5 {
		t.Errorf("ckptd leaks: goroutines %d -> %d, open files %d -> %d", before.Goroutines, after.Goroutines, before.OpenFDs, after.OpenFDs)
	}
	if after.RSSBytes > 256<<20 {
		t.Errorf("ckptd holds %d MiB after the load", after.RSSBytes>>20)
	}
	for _, sub := range []string{"staging", "dumps", "restores", "removing"} {
		if left, _ := os.ReadDir(filepath.Join(d.root, sub)); len(left) != 0 {
			t.Errorf("%s keeps %d entries after the load", sub, len(left))
		}
	}
}

// loadOp picks one request for client c's n-th turn.
func (d *daemon) loadOp(r *rand.Rand, c, n int) (string, []string) {
	cs := d.checkpointNames()
	pick := func() string {
		if len(cs) == 0 {
			return "none"
		}
		return cs[r.IntN(len(cs))]
	}
	switch k := r.IntN(10); {
	case k < 3:
		return "create", []string{"create", fmt.Sprintf("w%d", r.IntN(4)), "--leave-running"}
	case k < 5:
		return "restore", []string{"restore", pick(), "--name", fmt.Sprintf("copy-%d-%d", c, n)}
	case k < 6:
		return "inspect", []string{"inspect", pick()}
	case k < 7:
		return "ls", []string{"ls"}
	case k < 8:
		return "ps", []string{"ps"}
	}
	return "rm", []string{"rm", pick()}
}

func (d *daemon) checkpointNames() []string {
	out, _, err := d.ctl("ls", "-o", "json")
	if err != nil {
		return nil
	}
	var cs []checkpoint
	json.Unmarshal([]byte(out), &cs)
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	return names
}
