package integration

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// rewriteArchive rewrites an uncompressed ckptd archive as a hostile
// publisher would: edit changes the JSON of entry spec.dump (the OCI
// spec) or ckptd.json (the record), and every digest in the record is
// recomputed, so that integrity checks pass.
func rewriteArchive(t *testing.T, plain []byte, edit map[string]func(map[string]any)) []byte {
	t.Helper()
	type entry struct {
		h    *tar.Header
		data []byte
	}
	var entries []entry
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{h, data})
	}
	editJSON := func(data []byte, fn func(map[string]any)) []byte {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		fn(v)
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	sums := map[string][]byte{}
	for i, e := range entries {
		if fn := edit[e.h.Name]; fn != nil && e.h.Name != "ckptd.json" {
			entries[i].data = editJSON(e.data, fn)
		}
		sums[e.h.Name] = entries[i].data
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range entries {
		if e.h.Name == "ckptd.json" {
			e.data = editJSON(e.data, func(rec map[string]any) {
				if fn := edit["ckptd.json"]; fn != nil {
					fn(rec)
				}
				files := rec["files"].(map[string]any)
				for name := range files {
					archived := "checkpoint/" + name
					if name == "config.json" {
						archived = "spec.dump"
					} else if _, ok := sums[name]; ok {
						archived = name
					}
					sum := blake3.Sum256(sums[archived])
					files[name] = map[string]any{"size": len(sums[archived]), "blake3": hex.EncodeToString(sum[:])}
				}
			})
		}
		e.h.Size = int64(len(e.data))
		if err := tw.WriteHeader(e.h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestUntrustedArchives: checkpoints rewritten by a hostile publisher
// (digests recomputed) either restore without the dangerous part, the
// restore saying what it went without, or are refused by the setting
// that would allow them. No hook or CRIU action script ever runs.
func TestUntrustedArchives(t *testing.T) {
	x, d, _ := withRunningContainer(t, "web", counterScript, 2)
	dir := t.TempDir()
	marker := filepath.Join(dir, "MARKER")
	c := d.create("ctr:default/web", "--leave-running")
	plain := exportToStdout(t, d, c.Name, "none")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	spec := func(fn func(spec map[string]any)) map[string]func(map[string]any) {
		return map[string]func(map[string]any){"spec.dump": fn}
	}
	touch := map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "touch " + marker}}
	script := write("act.sh", []byte("#!/bin/sh\ntouch "+marker+"\n"))
	os.Chmod(script, 0o755)
	conf := write("action.conf", []byte("action-script "+script+"\n"))

	hooked := rewriteArchive(t, plain, spec(func(s map[string]any) {
		s["hooks"] = map[string]any{"prestart": []any{touch}, "createRuntime": []any{touch}, "poststart": []any{touch}}
		s["annotations"] = map[string]any{"org.criu.config": conf}
	}))
	d.must("import", write("hooked.tar", hooked), "--name", "hooked")
	if out := d.must("inspect", "hooked"); !strings.Contains(out, "Dropped:   its 3 OCI hooks") {
		t.Errorf("inspect does not say the hooks were dropped:\n%s", out)
	}
	_, errOut, err := d.ctl("restore", "hooked", "--name", "ctr:default/hooked")
	if err != nil || !strings.Contains(errOut, "restored without its 3 OCI hooks") || !strings.Contains(errOut, "org.criu.config") {
		t.Errorf("restore of the hooked archive: %v, stderr %q; want it restored, saying what it went without", err, errOut)
	}
	if st := x.status("hooked"); st != "running" {
		t.Errorf("hooked copy is %q", st)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the archive's hooks ran on the host: %s exists", marker)
	}

	for _, tc := range []struct {
		name, want string
		edit       func(map[string]any)
	}{
		{"hostbind", "trust_host_paths", func(s map[string]any) {
			s["mounts"] = append(s["mounts"].([]any), map[string]any{"destination": "/host", "type": "bind", "source": "/", "options": []string{"rbind"}})
		}},
		{"privileged", "trust_capabilities", func(s map[string]any) {
			caps := s["process"].(map[string]any)["capabilities"].(map[string]any)
			caps["bounding"] = append(caps["bounding"].([]any), "CAP_SYS_ADMIN")
		}},
		{"hostnet", "trust_host_namespaces", func(s map[string]any) {
			linux := s["linux"].(map[string]any)
			var kept []any
			for _, n := range linux["namespaces"].([]any) {
				if n.(map[string]any)["type"] != "network" {
					kept = append(kept, n)
				}
			}
			linux["namespaces"] = kept
		}},
	} {
		d.mustFail(tc.want, "import", write(tc.name+".tar", rewriteArchive(t, plain, spec(tc.edit))), "--name", tc.name)
	}
	for _, ck := range d.checkpoints() {
		if ck.Name == "hostbind" || ck.Name == "privileged" || ck.Name == "hostnet" {
			t.Errorf("a refused import is listed: %s", ck.Name)
		}
	}
	if l := leftovers(t, d); len(l) > 0 {
		t.Errorf("refused imports left %v", l)
	}

	// A workload's record naming a CRIU configuration (its action script
	// would run a command as root at restore).
	d.runLoad("wl", 4)
	w := d.create("wl", "--leave-running")
	configured := rewriteArchive(t, exportToStdout(t, d, w.Name, "none"), map[string]func(map[string]any){
		"ckptd.json": func(rec map[string]any) { rec["options"].(map[string]any)["criu_config"] = conf },
	})
	d.must("import", write("configured.tar", configured), "--name", "configured")
	_, errOut, err = d.ctl("restore", "configured", "--name", "wl2")
	if err != nil || !strings.Contains(errOut, "CRIU configuration file") {
		t.Errorf("restore of the configured archive: %v, stderr %q", err, errOut)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("something from outside ran on the host: %s exists", marker)
	}
}

// TestRootFromOutside: a workload checkpoint from outside whose tree runs
// as root (as CRIU would restore it) is refused without trust_root, in
// one line naming it, leaving nothing listed; with it, inspect and the
// restore say who the tree runs as.
func TestRootFromOutside(t *testing.T) {
	src := startDaemon(t)
	src.runLoad("rooted", 4)
	c := src.create("rooted", "--leave-running")
	archive := filepath.Join(t.TempDir(), "rooted.tar")
	src.must("export", c.Name, archive, "--compress", "none")

	strict := startDaemonWith(t, "--trust-root=false")
	strict.mustFail("trust_root", "import", archive)
	if cs := strict.checkpoints(); len(cs) != 0 {
		t.Errorf("a refused import is listed: %+v", cs)
	}
	if l := leftovers(t, strict); len(l) > 0 {
		t.Errorf("a refused import left %v", l)
	}

	trusting := startDaemon(t)
	trusting.must("import", archive, "--name", "rooted-in")
	if out := trusting.must("inspect", "rooted-in"); !strings.Contains(out, "Runs as:   uid 0, gid 0") {
		t.Errorf("inspect does not say who it runs as:\n%s", out)
	}
	_, errOut, err := trusting.ctl("restore", "rooted-in", "--name", "rooted-copy")
	if err != nil || !strings.Contains(errOut, "runs as uid 0, gid 0") {
		t.Errorf("restore: %v, stderr %q; want it restored, saying who it runs as", err, errOut)
	}
}
