package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// defaultPath is a workload's PATH unless --env sets one, as Podman's
// containers get.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// workloadEnv is the environment a workload starts with: PATH, TERM for a
// terminal (this shell's, or xterm), then the --env-file files' variables, then --env's, later
// ones winning. The client's own environment is not sent: "-e NAME"
// passes one variable on, as Podman does (lookup is os.LookupEnv).
func workloadEnv(envs, files []string, tty bool, lookup func(string) (string, bool)) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" || strings.ContainsAny(k, "\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("environment variable %.40q: want NAME=VALUE or NAME", kv)
		}
		if !ok {
			if v, ok = lookup(k); !ok {
				return nil // as Podman: a NAME this client does not have is left out
			}
		}
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
		return nil
	}
	set(defaultPath)
	if tty {
		// The terminal it is attached to is this one, at first.
		t, ok := lookup("TERM")
		if !ok || t == "" {
			t = "xterm"
		}
		set("TERM=" + t)
	}
	for _, f := range files {
		lines, err := envFile(f)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if err := set(l); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	for _, e := range envs {
		if err := set(e); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// envFile reads NAME=VALUE lines; blank lines and lines starting with #
// are skipped.
func envFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", path, err)
	}
	return out, nil
}
