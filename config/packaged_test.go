package config

import (
	"os"
	"reflect"
	"testing"
)

// TestPackagedConfig: the config.toml make install puts in /etc/ckptd
// parses, passes validation, and says what the defaults are.
func TestPackagedConfig(t *testing.T) {
	data, err := os.ReadFile("../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Default()
	// Spelled out there, left empty (meaning the same) here.
	ci, _ := c.PeerIdle()
	di, _ := d.PeerIdle()
	cg, _ := c.Grace()
	dg, _ := d.Grace()
	cs, _ := c.ShutdownCheckpointTimeout()
	ds, _ := d.ShutdownCheckpointTimeout()
	if ci != di || cg != dg || cs != ds || c.PeerMaxIncoming != 4 || len(c.PeerAllow) != 0 {
		t.Fatalf("packaged peer timeout %s, grace %s, max incoming %d, allow %v; defaults %s, %s, 4, none", ci, cg, c.PeerMaxIncoming, c.PeerAllow, di, dg)
	}
	c.PeerTimeout, c.ShutdownGrace, c.PeerMaxIncoming, c.PeerAllow = d.PeerTimeout, d.ShutdownGrace, d.PeerMaxIncoming, d.PeerAllow
	c.ShutdownCheckpoint = d.ShutdownCheckpoint
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("packaged config differs from the defaults:\n%+v\n%+v", c, d)
	}
}
