package main

import (
	"fmt"
	"slices"
	"strings"
)

// call is one criu command line zdtm.py ran, sorted into what ckptctl
// takes and what it does not.
type call struct {
	action string // "dump", "restore", or anything passed to the real criu
	pid    string // --tree
	dir    string // --images-dir
	log    string // --log-file, relative to dir unless absolute
	// pidfile is where a restore writes the restored tree's root PID.
	pidfile string
	flags   []string
	// config holds the dump's CRIU options ckptctl has no flag for, in
	// CRIU's configuration file syntax: the checkpoint carries the file
	// to its restores, as a user's --criu-config would.
	config []string
	// refused names the options ckptctl cannot pass at all: a restore
	// takes its options from the checkpoint.
	refused []string
}

// withArg lists CRIU's options that take a separate argument (criu's
// config.c, required_argument), so that the argument is not read as the
// next option.
var withArg = []string{
	"tree", "images-dir", "work-dir", "log-file", "join-ns", "root", "close", "pidfile",
	"veth-pair", "action-script", "address", "port", "prev-images-dir", "libdir",
	"ext-mount-map", "cgroup-root", "inherit-fd", "feature", "skip-mnt", "enable-fs",
	"freeze-cgroup", "ghost-limit", "irmap-scan-path", "lsm-profile", "timeout", "external",
	"empty-ns", "cgroup-props", "cgroup-props-file", "cgroup-dump-controller", "status-fd",
	"ps-socket", "config", "tls-cacert", "tls-cacrl", "tls-cert", "tls-key", "cgroup-yard",
	"pre-dump-mode", "file-validation", "lsm-mount-context", "network-lock",
}

var shortArg = map[string]string{"-t": "tree", "-D": "images-dir", "-W": "work-dir", "-o": "log-file", "-J": "join-ns", "-r": "root", "-L": "libdir", "-M": "ext-mount-map"}

// dumpFlags are the CRIU options ckptctl create has as flags of the same
// name; the value (if any) follows.
var dumpFlags = []string{"tcp-established", "file-locks", "ext-unix-sk", "shell-job", "link-remap", "ghost-limit", "leave-running"}

// restoreFlags are the CRIU restore options ckptctl restore has as flags.
var restoreFlags = []string{"tcp-close"}

// carried are restore options a checkpoint's own options already give
// its restores (ckptd restores with what the dump used).
var carried = []string{"tcp-established", "file-locks", "ext-unix-sk", "shell-job", "link-remap"}

// ignored are options of zdtm's harness, not of the test: ckptd sets
// its own log, verbosity, watchdog and detaches every restore.
var ignored = []string{"no-default-config", "verbosity", "timeout", "restore-detached", "restore-sibling"}

// option is one CRIU option: its name without dashes and its argument.
type option struct{ name, arg string }

// parse reads criu's argv after the program name.
func parse(argv []string) (call, error) {
	if len(argv) == 0 {
		return call{}, fmt.Errorf("no action")
	}
	c := call{action: argv[0]}
	if c.action != "dump" && c.action != "restore" {
		return c, nil
	}
	opts, err := options(argv[1:])
	if err != nil {
		return c, err
	}
	for _, o := range opts {
		c.sort(o)
	}
	if c.dir == "" {
		return c, fmt.Errorf("%s without --images-dir", c.action)
	}
	if c.action == "dump" && c.pid == "" {
		return c, fmt.Errorf("dump without --tree")
	}
	return c, nil
}

// options splits argv into options, taking each one's argument.
func options(argv []string) ([]option, error) {
	var out []option
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		if long, ok := shortArg[a]; ok {
			a = "--" + long
		}
		if strings.HasPrefix(a, "-v") && !strings.HasPrefix(a, "--") {
			out = append(out, option{"verbosity", strings.TrimPrefix(a, "-v")})
			continue
		}
		if !strings.HasPrefix(a, "--") {
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
		name, arg, hasArg := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !hasArg && slices.Contains(withArg, name) {
			if i+1 >= len(argv) {
				return nil, fmt.Errorf("--%s needs an argument", name)
			}
			i++
			arg = argv[i]
		}
		out = append(out, option{name, arg})
	}
	return out, nil
}

func (c *call) sort(o option) {
	switch {
	case o.name == "images-dir":
		c.dir = o.arg
	case o.name == "log-file":
		c.log = o.arg
	case o.name == "tree":
		c.pid = o.arg
	case o.name == "pidfile" && c.action == "restore":
		c.pidfile = o.arg
	case slices.Contains(ignored, o.name):
	case c.action == "dump" && slices.Contains(dumpFlags, o.name):
		c.flags = append(c.flags, "--"+o.name)
		if o.arg != "" {
			c.flags = append(c.flags, o.arg)
		}
	case c.action == "dump":
		c.config = append(c.config, o.configLine())
	case c.action == "restore" && slices.Contains(restoreFlags, o.name):
		c.flags = append(c.flags, "--"+o.name)
	case slices.Contains(carried, o.name):
	default:
		c.refused = append(c.refused, "--"+strings.TrimSuffix(o.name+"="+o.arg, "="))
	}
}

// configLine is o in CRIU's configuration syntax, which splits a line at
// spaces into words for getopt: an optional argument needs its "=".
func (o option) configLine() string {
	switch {
	case o.arg == "":
		return o.name
	case slices.Contains(withArg, o.name):
		return o.name + " " + o.arg
	}
	return o.name + "=" + o.arg
}
