package integration

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/store"
)

// TestQuietPeer: a peer with a valid certificate that offers a workload
// and then says nothing holds the destination's name only until
// peer_timeout: a local run of that name goes through, and the peer finds
// its connection ended. Peers beyond peer_max_incoming are refused at
// their hello, and admitted again once the quiet ones are cut off. A
// source announcing more bytes than its offer is cut off.
func TestQuietPeer(t *testing.T) {
	d, addr, cfg := loopbackDestination(t, "--peer-timeout", partitionIdle.String(), "--peer-max-incoming", "2")
	cpuinfo := cpuinfoImage(t)
	offer := func(name string, mem int64) *migrate.Conn {
		t.Helper()
		c := dialPeer(t, addr, cfg)
		o := &migrate.Offer{Target: store.TargetRef{Kind: store.KindWorkload, Name: name}, CPUInfo: cpuinfo, MemoryBytes: mem}
		if err := c.Send(&migrate.Message{Kind: migrate.KindOffer, Offer: o}); err != nil {
			t.Fatal(err)
		}
		r, err := c.Recv(migrate.KindReport)
		if err != nil || len(r.Report.Problems) > 0 {
			t.Fatalf("offer of %s: %v %+v", name, err, r)
		}
		return c
	}

	quiet := offer("quiet", 1<<20)
	second := offer("other", 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := migrate.Dial(ctx, addr, cfg, 0); err == nil || !strings.Contains(err.Error(), "peer_max_incoming") {
		t.Errorf("a third peer, over peer_max_incoming: %v", err)
		if c != nil {
			c.Close()
		}
	}
	start := time.Now()
	d.runLoad("quiet", 4)
	if took := time.Since(start); took > partitionIdle+5*time.Second {
		t.Errorf("a local run of the quiet peer's name waited %s", took)
	}
	for _, c := range []*migrate.Conn{quiet, second} {
		c.SetDeadline(time.Now().Add(partitionIdle + 10*time.Second))
		if _, err := c.Next(); err == nil || !strings.Contains(err.Error(), "no progress") {
			t.Errorf("the quiet peer's connection: %v", err)
		}
		c.Close()
	}
	d.must("kill", "quiet")

	// Admitted again; and cut off when it sends more than it offered.
	greedy := offer("greedy", 1<<20)
	defer greedy.Close()
	if err := greedy.Send(&migrate.Message{Kind: migrate.KindFile, File: &migrate.File{Name: "pages-1.img", Size: 100 << 20}}); err != nil {
		t.Fatal(err)
	}
	if _, err := greedy.Next(); err == nil || !strings.Contains(err.Error(), "more than its offer") {
		t.Errorf("a source sending more than its offer: %v", err)
	}
	waitFor(t, "the destination to log the greedy peer", func() bool { return strings.Contains(d.log.String(), "more than its offer") })
}

func dialPeer(t *testing.T, addr string, cfg *tls.Config) *migrate.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := migrate.Dial(ctx, addr, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
