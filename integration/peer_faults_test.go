package integration

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/peer"
	"github.com/ckptd/ckptd/store"
)

// TestHostilePeer plays a source ckptd with a valid certificate that sends
// malformed or malicious messages to a real destination on loopback. Each
// must fail that migration only: the destination keeps serving, writes
// nothing outside its state root, and keeps nothing of the attempt.
func TestHostilePeer(t *testing.T) {
	d, addr, cfg := loopbackDestination(t)
	cpuinfo := cpuinfoImage(t)
	escape := filepath.Join(filepath.Dir(d.root), "escaped")
	wl := store.TargetRef{Kind: store.KindWorkload, Name: "hostile"}
	good := &migrate.Offer{Target: wl, CPUInfo: cpuinfo, MemoryBytes: 1 << 20}
	precopy := &migrate.Offer{Target: wl, CPUInfo: cpuinfo, MemoryBytes: 1 << 20, Rounds: 3}

	for _, tc := range []struct {
		name string
		msgs []*migrate.Message // after the offer is accepted, when the first is a valid offer
		want string             // in the destination's answer
	}{
		{"offer without body", []*migrate.Message{{Kind: migrate.KindOffer}}, "offer without its body"},
		{"workload name escaping the root", []*migrate.Message{{Kind: migrate.KindOffer, Offer: &migrate.Offer{
			Target: store.TargetRef{Kind: store.KindWorkload, Name: "../../escaped"}, CPUInfo: cpuinfo}}}, "contains '..'"},
		{"file larger than its offer", []*migrate.Message{{Kind: migrate.KindOffer, Offer: good},
			{Kind: migrate.KindFile, File: &migrate.File{Name: "pages-1.img", Size: 1 << 39}}}, "more than its offer"},
		{"commit of another target", []*migrate.Message{{Kind: migrate.KindOffer, Offer: good},
			{Kind: migrate.KindCommit, Commit: &migrate.Commit{Checkpoint: &store.Checkpoint{
				Target: store.TargetRef{Kind: store.KindWorkload, Name: "other"}}}}}, "commit of workload/other"},
		{"commit without checkpoint", []*migrate.Message{{Kind: migrate.KindOffer, Offer: good},
			{Kind: migrate.KindCommit, Commit: &migrate.Commit{}}}, "commit without its checkpoint"},
		{"pre-copy round not offered", []*migrate.Message{{Kind: migrate.KindOffer, Offer: good},
			{Kind: migrate.KindRound, Round: &migrate.Round{N: 1}}}, "round 1 after round 0 of at most 0"},
		{"pre-copy round out of order", []*migrate.Message{{Kind: migrate.KindOffer, Offer: precopy},
			{Kind: migrate.KindRound, Round: &migrate.Round{N: 2}}}, "round 2 after round 0"},
		{"pre-copy offer with a page stream", []*migrate.Message{{Kind: migrate.KindOffer, Offer: &migrate.Offer{
			Target: wl, CPUInfo: cpuinfo, Rounds: 2, PageStream: true}}}, "without a page stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := hostileExchange(t, addr, cfg, tc.msgs)
			if !strings.Contains(got, tc.want) {
				t.Errorf("destination answered %q, want %q", got, tc.want)
			}
			d.must("version") // still serving
			// dumps/ keeps the work dirs of failures, bounded, for their logs.
			for _, sub := range []string{"staging", "checkpoints", "workloads"} {
				if left, _ := os.ReadDir(filepath.Join(d.root, sub)); len(left) != 0 {
					t.Errorf("%s keeps %d entries after a refused migration", sub, len(left))
				}
			}
			if _, err := os.Stat(escape); !os.IsNotExist(err) {
				t.Errorf("a peer wrote outside the state root: %s", escape)
			}
		})
	}
	if !strings.Contains(d.log.String(), "protocol:") {
		t.Error("the destination did not log the protocol errors")
	}
}

// loopbackDestination starts a ckptd serving peers on a loopback port
// with certificates from a test CA, with extra flags, and returns it, its
// peer address, and a peer's credentials from the same CA.
func loopbackDestination(t *testing.T, extra ...string) (*daemon, string, *tls.Config) {
	t.Helper()
	pki := t.TempDir()
	ctl(t, "certs", "ca", filepath.Join(pki, "ca"), "--name", "ckptd test CA")
	ctl(t, "certs", "host", "local", "--ca", filepath.Join(pki, "ca"), "--out", filepath.Join(pki, "local"), "--ip", "127.0.0.1")
	cfg, err := peer.Config(filepath.Join(pki, "local"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + freePort(t)
	d := startDaemonWith(t, append([]string{"--peer-listen", addr, "--peer-certs", filepath.Join(pki, "local")}, extra...)...)
	return d, addr, cfg
}

// cpuinfoImage is this host's `criu cpuinfo dump`, as an offer carries.
func cpuinfoImage(t *testing.T) []byte {
	t.Helper()
	scratch := t.TempDir()
	if out, err := exec.Command("criu", "cpuinfo", "dump", "-D", scratch).CombinedOutput(); err != nil {
		t.Fatalf("criu cpuinfo dump: %v: %s", err, out)
	}
	cpuinfo, err := os.ReadFile(filepath.Join(scratch, "cpuinfo.img"))
	if err != nil {
		t.Fatal(err)
	}
	return cpuinfo
}

// hostileExchange sends msgs on a new migration connection; when the first
// is a valid offer it expects it accepted before sending the rest. It
// returns how the destination ended the exchange.
func hostileExchange(t *testing.T, addr string, cfg *tls.Config, msgs []*migrate.Message) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := migrate.Dial(ctx, addr, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for i, m := range msgs {
		if err := c.Send(m); err != nil {
			return err.Error()
		}
		if i == 0 && m.Offer != nil && len(msgs) > 1 {
			r, err := c.Recv(migrate.KindReport)
			if err != nil {
				t.Fatalf("offer: %v", err)
			}
			if len(r.Report.Problems) > 0 {
				t.Fatalf("a valid offer was refused: %v", r.Report.Problems)
			}
		}
	}
	_, err = c.Next()
	if err == nil {
		t.Fatal("the destination went on after a hostile message")
	}
	return err.Error()
}

// TestPeerAllow: with peer_allow, a peer from the right CA whose name is
// not listed is refused at the handshake; a listed one gets in; check says
// which CA and peers are accepted.
func TestPeerAllow(t *testing.T) {
	pki := t.TempDir()
	ctl(t, "certs", "ca", filepath.Join(pki, "ca"), "--name", "ckptd test CA")
	for _, h := range []string{"local", "other"} {
		ctl(t, "certs", "host", h, "--ca", filepath.Join(pki, "ca"), "--out", filepath.Join(pki, h), "--ip", "127.0.0.1")
	}
	addr := "127.0.0.1:" + freePort(t)
	d := startDaemonWith(t, "--peer-listen", addr, "--peer-certs", filepath.Join(pki, "local"), "--peer-allow", "local,someone")
	if out := d.must("check"); !strings.Contains(out, `CA "ckptd test CA"`) || !strings.Contains(out, "peers allowed: local, someone") {
		t.Errorf("check does not say which peers are accepted:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range []struct {
		name string
		ok   bool
	}{{"other", false}, {"local", true}} {
		cfg, err := peer.Config(filepath.Join(pki, h.name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := migrate.Dial(ctx, addr, cfg, 0)
		if (err == nil) != h.ok {
			t.Errorf("peer %s: dial: %v, want accepted=%v", h.name, err, h.ok)
		}
		if err == nil {
			c.Close()
		}
	}
	if !strings.Contains(d.log.String(), `peer \"other\" is not in peer_allow`) {
		t.Errorf("the refusal was not logged:\n%s", d.log)
	}
}
