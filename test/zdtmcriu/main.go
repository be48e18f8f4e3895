// Command zdtmcriu stands in for criu under CRIU's zdtm.py (--criu-bin):
// it turns zdtm's dump into `ckptctl create` and its restore into
// `ckptctl restore`, so that CRIU's own tests run through ckptd. Every
// other action (check, pre-dump, page-server...) goes to the real criu.
//
// zdtm runs each test, and criu, in new PID, network, mount and IPC
// namespaces (zdtm_ct); so does this ckptd: the first dump of a test
// starts one, beside the test, with its state under ZDTM_CKPTD_STATE. It
// ends with the test's namespaces.
//
// Environment: ZDTM_CKPTD and ZDTM_CKPTCTL (the binaries), ZDTM_REAL_CRIU
// (the criu binary), ZDTM_CKPTD_STATE (a directory for the ckptds' roots).
//
// The log zdtm asks for gets ckptctl's output and, when ckptd names a
// CRIU log in its error, that log, so zdtm's own report shows why.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nameFile, in zdtm's images directory, names the checkpoint its dump made.
const nameFile = "ckptd-checkpoint"

// configFile, in zdtm's images directory, holds the dump's CRIU options
// ckptctl has no flag for.
const configFile = "ckptd-criu.conf"

func main() {
	c, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "zdtmcriu: %v\n", err)
		os.Exit(2)
	}
	switch c.action {
	case "dump":
		os.Exit(dump(c))
	case "restore":
		os.Exit(restore(c))
	}
	real := env("ZDTM_REAL_CRIU", "/usr/local/sbin/criu")
	err = syscall.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "zdtmcriu: exec %s: %v\n", real, err)
	os.Exit(2)
}

func dump(c call) int {
	if err := startDaemon(c); err != nil {
		return fail(c, err.Error())
	}
	name := "zdtm-" + c.pid + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	args := append([]string{"create", c.pid, "--name", name}, c.flags...)
	if len(c.config) > 0 {
		path, err := filepath.Abs(filepath.Join(c.dir, configFile))
		if err == nil {
			err = os.WriteFile(path, []byte(strings.Join(c.config, "\n")+"\n"), 0o644)
		}
		if err != nil {
			return fail(c, fmt.Sprintf("write the CRIU configuration: %v", err))
		}
		args = append(args, "--criu-config", path)
	}
	if _, err := ckptctl(c, args); err != nil {
		return 1
	}
	if err := os.WriteFile(filepath.Join(c.dir, nameFile), []byte(name), 0o644); err != nil {
		return fail(c, err.Error())
	}
	return 0
}

func restore(c call) int {
	c.refused = notCarried(c.refused, c.dir)
	if len(c.refused) > 0 {
		return fail(c, fmt.Sprintf("ckptctl restore takes its CRIU options from the checkpoint; it cannot pass %s", strings.Join(c.refused, " ")))
	}
	name, err := os.ReadFile(filepath.Join(c.dir, nameFile))
	if err != nil {
		return fail(c, fmt.Sprintf("no checkpoint for this restore: %v", err))
	}
	out, err := ckptctl(c, append([]string{"restore", string(name)}, c.flags...))
	if err != nil {
		return 1
	}
	if c.pidfile != "" {
		m := restoredPID.FindStringSubmatch(out)
		if m == nil {
			return fail(c, "ckptctl restore printed no PID: "+out)
		}
		if err := os.WriteFile(c.pidfile, []byte(m[1]), 0o644); err != nil {
			return fail(c, err.Error())
		}
	}
	return 0
}

// restoredPID finds the PID in ckptctl restore's report.
var restoredPID = regexp.MustCompile(`restored as pid (\d+)`)

// ckptctl runs ckptctl with args and writes what it said into c's log.
func ckptctl(c call, args []string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(env("ZDTM_CKPTCTL", "ckptctl"), args...)
	cmd.Env = append(os.Environ(), "CKPTD_SOCKET="+socketOf(c))
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := fmt.Sprintf("ckptctl %s\n%s", strings.Join(args, " "), out.String())
	if err == nil {
		writeLog(c, text)
		return out.String(), nil
	}
	var detail string
	if m := criuLog.FindStringSubmatch(out.String()); m != nil {
		if b, rerr := os.ReadFile(m[1]); rerr == nil {
			detail = "\n--- " + m[1] + "\n" + string(b)
		}
	}
	writeLog(c, text+"Error (zdtmcriu): ckptctl "+args[0]+" failed: "+strings.TrimSpace(out.String())+"\n"+detail)
	return "", err
}

// criuLog finds the CRIU log ckptd names in an error.
var criuLog = regexp.MustCompile(`\(log: ([^)\s]+)\)`)

func fail(c call, msg string) int {
	writeLog(c, "Error (zdtmcriu): "+msg+"\n")
	return 1
}

// writeLog writes the log zdtm greps for errors, where criu would.
func writeLog(c call, text string) {
	path := c.log
	if path == "" {
		path = c.action + ".log"
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.dir, path)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "zdtmcriu: %v\n%s", err, text)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// notCarried drops from refused the options the dump's configuration
// file holds already: the checkpoint gives its restores that file.
func notCarried(refused []string, dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, configFile))
	if err != nil {
		return refused
	}
	carried := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		carried["--"+strings.Replace(line, " ", "=", 1)] = true
	}
	var out []string
	for _, o := range refused {
		if !carried[o] {
			out = append(out, o)
		}
	}
	return out
}
