// Package nettest helps tests and the benchmark that put namespaces on a
// CNI network leave the host's firewall as they found it.
package nettest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// KeepHost puts back, when the test ends, what the CNI plugins change on
// the host once and never undo (see Snapshot), and fails the test if a
// nat or filter rule of CNI network netName is left. Only that network's
// rules are compared: other packages' tests run beside this one.
func KeepHost(t testing.TB, bridge, netName string) {
	t.Helper()
	before := map[string]string{}
	for _, table := range []string{"nat", "filter"} {
		r, err := networkRules(table, netName)
		if err != nil {
			t.Fatal(err)
		}
		before[table] = r
	}
	restore, err := Snapshot(bridge)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := restore(); err != nil {
			t.Error(err)
		}
		for table, r := range before {
			after, err := networkRules(table, netName)
			if err != nil {
				t.Error(err)
			} else if after != r {
				t.Errorf("%s rules changed by the test:\nbefore:\n%s\nafter:\n%s", table, r, after)
			}
		}
	})
}

// Snapshot notes what the CNI plugins change on the host once and never
// undo, and returns what puts it back: the bridge (when it was not
// there), IPv4 forwarding (the bridge plugin turns it on), the chains
// portmap makes (CNI-HOSTPORT-*) and those the firewall plugin of
// Podman's networks makes (CNI-FORWARD, CNI-ADMIN), unless they were
// there.
func Snapshot(bridge string) (restore func() error, err error) {
	var errs []error
	forward, err := os.ReadFile(forwardSysctl)
	if err != nil {
		return nil, err
	}
	hadBridge := exec.Command("ip", "link", "show", bridge).Run() == nil
	nat, err := rules("nat")
	if err != nil {
		return nil, err
	}
	filter, err := rules("filter")
	if err != nil {
		return nil, err
	}
	// Whether a chain is there now; a failed look is an error.
	has := func(table, chain string) bool {
		r, err := rules(table)
		if err != nil {
			errs = append(errs, err)
		}
		return strings.Contains(r, chain)
	}
	return func() error {
		errs = nil
		if !hadBridge {
			exec.Command("ip", "link", "del", bridge).Run() // gone already is fine
		}
		if err := os.WriteFile(forwardSysctl, forward, 0o644); err != nil {
			errs = append(errs, err)
		}
		if !strings.Contains(nat, "CNI-HOSTPORT-DNAT") && has("nat", "CNI-HOSTPORT-DNAT") {
			errs = append(errs, iptables("nat",
				[]string{"-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				[]string{"-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				[]string{"-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
				[]string{"-F", "CNI-HOSTPORT-DNAT"}, []string{"-F", "CNI-HOSTPORT-MASQ"}, []string{"-F", "CNI-HOSTPORT-SETMARK"},
				[]string{"-X", "CNI-HOSTPORT-DNAT"}, []string{"-X", "CNI-HOSTPORT-MASQ"}, []string{"-X", "CNI-HOSTPORT-SETMARK"}))
		}
		if !strings.Contains(filter, "CNI-FORWARD") && has("filter", "CNI-FORWARD") {
			errs = append(errs, iptables("filter",
				[]string{"-D", "FORWARD", "-m", "comment", "--comment", "CNI firewall plugin rules", "-j", "CNI-FORWARD"},
				[]string{"-F", "CNI-FORWARD"}, []string{"-F", "CNI-ADMIN"}, []string{"-X", "CNI-FORWARD"}, []string{"-X", "CNI-ADMIN"}))
		}
		return errors.Join(errs...)
	}, nil
}

func iptables(table string, cmds ...[]string) error {
	var errs []error
	for _, args := range cmds {
		if out, err := exec.Command("iptables", append([]string{"-t", table}, args...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("iptables %v: %v: %s", args, err, out))
		}
	}
	return errors.Join(errs...)
}

const forwardSysctl = "/proc/sys/net/ipv4/ip_forward"

// networkRules is a table's rules that name CNI network netName.
func networkRules(table, netName string) (string, error) {
	all, err := rules(table)
	if err != nil {
		return "", err
	}
	var out []string
	for _, l := range strings.Split(all, "\n") {
		if strings.Contains(l, `name: \"`+netName+`\"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n"), nil
}

// rules is a table's chains and rules, without counters.
func rules(table string) (string, error) {
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		return "", fmt.Errorf("iptables-save -t %s: %w", table, err)
	}
	var rs []string
	for _, l := range strings.Split(string(out), "\n") {
		builtin := false
		for _, c := range []string{":PREROUTING", ":INPUT", ":OUTPUT", ":POSTROUTING", ":FORWARD"} {
			builtin = builtin || strings.HasPrefix(l, c)
		}
		if strings.HasPrefix(l, "-A") || strings.HasPrefix(l, ":") && !builtin {
			rs = append(rs, strings.Fields(l)[0]+" "+strings.Join(strings.Fields(l)[1:], " "))
		}
	}
	return strings.Join(rs, "\n"), nil
}
