package integration

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsAndEvents: what a test causes (two creates, a restore, a
// refused restore, an rm) shows in the Prometheus metrics scraped over
// HTTP and in `ckptctl events -o json`.
func TestMetricsAndEvents(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := startDaemonWith(t, "--metrics-listen", addr)

	events := d.followEvents(t)
	seen := events.kinds

	d.runLoad("ev", 16)
	good := d.create("ev", "--leave-running", "--name", "ev-good")
	bad := d.create("ev", "--leave-running", "--name", "ev-bad")
	corrupt(t, d, bad.ID, 4096)
	d.must("restore", good.Name, "--name", "evcopy")
	d.mustFail("does not match its checksum", "restore", bad.Name, "--name", "evbad")
	d.must("rm", bad.Name)

	want := "created sealed created sealed restored failed/restore removed"
	waitFor(t, "events "+want, func() bool { return strings.Contains(seen(), want) })

	metrics := scrape(t, addr)
	for _, line := range []string{
		`ckptd_checkpoints_created_total{kind="workload"} 2`,
		`ckptd_checkpoint_frozen_seconds_count 2`,
		`ckptd_restores_total 1`,
		`ckptd_failures_total{op="restore"} 1`,
		`ckptd_checkpoints_removed_total{by="rm"} 1`,
		`ckptd_store_checkpoints{target="workload/ev"} 1`,
		`ckptd_checkpoints_sealing 0`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %q", line)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(b)
}
