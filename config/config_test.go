package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, body, wantErr string
		check               func(Config) bool
	}{
		{name: "overrides", body: "root = \"/srv/ck\"\nlog_level = \"debug\"\n",
			check: func(c Config) bool {
				return c.Root == "/srv/ck" && c.LogLevel == "debug" && c.Socket == Default().Socket
			}},
		{name: "unknown key", body: "rooot = \"/x\"\n", wantErr: "unknown key"},
		{name: "bad toml", body: "root = \n", wantErr: "parse config"},
		{name: "relative root", body: "root = \"state\"\n", wantErr: "absolute path"},
		{name: "root is /", body: "root = \"/\"\n", wantErr: "other than /"},
		{name: "bad level", body: "log_level = \"loud\"\n", wantErr: "log_level"},
		{name: "bad format", body: "log_format = \"xml\"\n", wantErr: "log_format"},
		{name: "containerd", body: "containerd_socket = \"/tmp/c.sock\"\ncontainerd_namespace = \"k8s.io\"\n",
			check: func(c Config) bool { return c.Containerd == "/tmp/c.sock" && c.ContainerdNamespace == "k8s.io" }},
		{name: "relative containerd socket", body: "containerd_socket = \"c.sock\"\n", wantErr: "containerd_socket"},
		{name: "bad namespace", body: "containerd_namespace = \"a/b\"\n", wantErr: "containerd_namespace"},
		{name: "shutdown grace", body: "shutdown_grace = \"30s\"\n",
			check: func(c Config) bool { g, err := c.Grace(); return err == nil && g == 30*time.Second }},
		{name: "default grace", body: "\n",
			check: func(c Config) bool { g, err := c.Grace(); return err == nil && g == 2*time.Minute }},
		{name: "bad grace", body: "shutdown_grace = \"soon\"\n", wantErr: "shutdown_grace"},
		{name: "shutdown checkpoint", body: "checkpoint_on_stop = true\nshutdown_checkpoint_timeout = \"90s\"\n",
			check: func(c Config) bool {
				d, err := c.ShutdownCheckpointTimeout()
				return err == nil && d == 90*time.Second && c.CheckpointOnStop
			}},
		{name: "shutdown checkpoint default", body: "",
			check: func(c Config) bool {
				d, err := c.ShutdownCheckpointTimeout()
				return err == nil && d == 150*time.Second
			}},
		{name: "bad shutdown checkpoint", body: "shutdown_checkpoint_timeout = \"0s\"\n", wantErr: "shutdown_checkpoint_timeout"},
		{name: "scrub", body: "scrub_interval = \"24h\"\nscrub_rate_mib = 10\n",
			check: func(c Config) bool {
				d, err := c.Scrub()
				return err == nil && d == 24*time.Hour && c.ScrubRateMiB == 10
			}},
		{name: "no scrub by default", body: "\n",
			check: func(c Config) bool { d, err := c.Scrub(); return err == nil && d == 0 && c.ScrubRateMiB == 64 }},
		{name: "scrub too often", body: "scrub_interval = \"100ms\"\n", wantErr: "scrub_interval"},
		{name: "bad scrub rate", body: "scrub_rate_mib = 0\n", wantErr: "scrub_rate_mib"},
		{name: "schedule", body: "[[schedule]]\ntarget = \"job\"\nevery = \"10m\"\nkeep_last = 5\nmax_bytes = \"20GiB\"\n",
			check: func(c Config) bool {
				d, r, err := c.Schedules[0].Parse()
				return err == nil && d == 10*time.Minute && r.KeepLast == 5 && r.MaxBytes == 20<<30
			}},
		{name: "schedule without target", body: "[[schedule]]\nevery = \"10m\"\n", wantErr: "without a target"},
		{name: "schedule too often", body: "[[schedule]]\ntarget = \"job\"\nevery = \"10ms\"\n", wantErr: "every"},
		{name: "schedule bad size", body: "[[schedule]]\ntarget = \"job\"\nevery = \"1m\"\nmax_bytes = \"big\"\n", wantErr: "max_bytes"},
		{name: "access", body: "socket_group = \"nogroup\"\npeer_allow = [\"a\", \"b\"]\n",
			check: func(c Config) bool { return c.SocketGroup == "nogroup" && len(c.PeerAllow) == 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(tc.body), true)
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want InvalidArgument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("config %+v, err %v", c, err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.toml")
	if c, err := Load(p, false); err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("optional missing file: %+v %v", c, err)
	}
	if _, err := Load(p, true); err == nil {
		t.Error("required missing file loaded")
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
}
