// Command zdtmreport compares two zdtm.py TAP reports, raw CRIU's and
// ckptd's, and prints which tests pass on each side and why the others
// failed.
//
//	zdtmreport RAW.tap CKPTD.tap
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// result is one test's line in a TAP report.
type result struct {
	status string // "pass", "fail" or "skip"
	reason string // why it failed or was skipped
}

var (
	tapLine = regexp.MustCompile(`^(ok|not ok) \d+ - (\S+)(?: # (.*))?$`)
	// failLine picks the line of a failed test's output that says why,
	// ckptd's own words first.
	failLines = []*regexp.Regexp{
		regexp.MustCompile(`Error \(zdtmcriu\): (.*)`),
		regexp.MustCompile(`Error \(criu/[^)]*\): (.*)`),
		regexp.MustCompile(`(?i)^\s*(.*\b(fail|error)\b.*)$`),
	}
)

// parseTAP reads a zdtm.py report: "ok N - name", "ok N - name # SKIP
// why", "not ok N - name # flavor h" with the test's output after it.
func parseTAP(r io.Reader) (map[string]result, error) {
	out := map[string]result{}
	var failed string
	var output []string
	flush := func() {
		if failed != "" {
			out[failed] = result{"fail", failReason(output)}
		}
		failed, output = "", nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := tapLine.FindStringSubmatch(sc.Text())
		if m == nil {
			output = append(output, sc.Text())
			continue
		}
		flush()
		switch {
		case m[1] == "not ok":
			failed = m[2]
		case strings.HasPrefix(m[3], "SKIP"):
			out[m[2]] = result{"skip", strings.TrimSpace(strings.TrimPrefix(m[3], "SKIP"))}
		default:
			out[m[2]] = result{status: "pass"}
		}
	}
	flush()
	return out, sc.Err()
}

// rlimitNoise is an error CRIU logs, and then ignores, where it cannot
// raise its own RLIMIT_NOFILE.
const rlimitNoise = "Can't setup RLIMIT_NOFILE"

// failReason is the first line of output that says why a test failed.
func failReason(output []string) string {
	for _, re := range failLines {
		for _, line := range output {
			if strings.Contains(line, rlimitNoise) {
				continue
			}
			if m := re.FindStringSubmatch(line); m != nil {
				// zdtm quotes log lines as Python bytes, and YAML folds them.
				return truncate(strings.TrimRight(strings.TrimSpace(m[1]), `"'\`), 160)
			}
		}
	}
	return "no error line in zdtm's output"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: zdtmreport RAW.tap CKPTD.tap")
		os.Exit(2)
	}
	raw, err := load(os.Args[1])
	if err == nil {
		var ck map[string]result
		if ck, err = load(os.Args[2]); err == nil {
			report(os.Stdout, raw, ck)
			return
		}
	}
	fmt.Fprintf(os.Stderr, "zdtmreport: %v\n", err)
	os.Exit(1)
}

func load(path string) (map[string]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseTAP(f)
}

// report prints the comparison: counts, then each test that did not pass
// on both sides with the reason.
func report(w io.Writer, raw, ck map[string]result) {
	var names []string
	for n := range raw {
		names = append(names, n)
	}
	for n := range ck {
		if _, ok := raw[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	count := func(m map[string]result, status string) (n int) {
		for _, r := range m {
			if r.status == status {
				n++
			}
		}
		return n
	}
	fmt.Fprintf(w, "zdtm static tests, host flavour: raw CRIU passed %d of %d run (%d skipped); through ckptd %d of %d run (%d skipped)\n",
		count(raw, "pass"), len(raw)-count(raw, "skip"), count(raw, "skip"),
		count(ck, "pass"), len(ck)-count(ck, "skip"), count(ck, "skip"))
	section := func(title string, keep func(r, c result) bool, why func(r, c result) string) {
		var lines []string
		for _, n := range names {
			if r, c := raw[n], ck[n]; keep(r, c) {
				lines = append(lines, fmt.Sprintf("  %-36s %s", strings.TrimPrefix(n, "zdtm/static/"), why(r, c)))
			}
		}
		fmt.Fprintf(w, "\n%s: %d\n%s", title, len(lines), strings.Join(lines, "\n"))
		if len(lines) > 0 {
			fmt.Fprintln(w)
		}
	}
	section("passed raw, failed through ckptd", func(r, c result) bool { return r.status == "pass" && c.status == "fail" },
		func(_, c result) string { return c.reason })
	section("passed raw, not run through ckptd", func(r, c result) bool { return r.status == "pass" && c.status != "pass" && c.status != "fail" },
		func(_, c result) string { return or(c.reason, "missing from ckptd's report") })
	section("failed raw, passed through ckptd", func(r, c result) bool { return r.status == "fail" && c.status == "pass" },
		func(r, _ result) string { return r.reason })
	bothFailed(w, names, raw, ck)
}

// bothFailed counts the tests that failed on both sides by raw CRIU's
// reason: a host's limits fail many of them alike.
func bothFailed(w io.Writer, names []string, raw, ck map[string]result) {
	byReason := map[string][]string{}
	var reasons []string
	for _, n := range names {
		if raw[n].status != "fail" || ck[n].status != "fail" {
			continue
		}
		r := raw[n].reason
		if byReason[r] == nil {
			reasons = append(reasons, r)
		}
		byReason[r] = append(byReason[r], strings.TrimPrefix(n, "zdtm/static/"))
	}
	total := 0
	for _, r := range reasons {
		total += len(byReason[r])
	}
	fmt.Fprintf(w, "\nfailed on both sides: %d\n", total)
	for _, r := range reasons {
		fmt.Fprintf(w, "  %d, raw CRIU: %s\n    %s\n", len(byReason[r]), r, strings.Join(byReason[r], " "))
	}
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
