package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any bytes as a config file parse or fail cleanly; a config
// that validates has absolute paths.
func FuzzParse(f *testing.F) {
	f.Add([]byte("root = \"/srv/ck\"\nlog_level = \"debug\"\n"))
	f.Add([]byte("peer_listen = \"127.0.0.1:7070\"\ncriu_timeout = \"10m\"\nshutdown_grace = \"1s\"\n"))
	f.Add([]byte("root = \n"))
	f.Add([]byte("[x]\ny = [1, \"a\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil || c.Validate() != nil {
			return
		}
		for _, p := range []string{c.Root, c.Socket, c.PeerCerts} {
			if !filepath.IsAbs(p) || strings.Contains(p, "\x00") {
				t.Fatalf("validated config has a bad path %q", p)
			}
		}
	})
}
