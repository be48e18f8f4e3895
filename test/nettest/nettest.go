// Package nettest helps tests that put namespaces on a CNI network leave
// the host's firewall as they found it.
package nettest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// KeepHost puts back, when the test ends, what the CNI plugins change on
// the host once and never undo: the bridge (when the test made it), IPv4
// forwarding (the bridge plugin turns it on), and the chains portmap makes
// (CNI-HOSTPORT-*, unless they were there); and fails the test if any
// other nat rule it made is left.
func KeepHost(t testing.TB, bridge string) {
	t.Helper()
	before := NatRules(t)
	forward, err := os.ReadFile(forwardSysctl)
	if err != nil {
		t.Fatal(err)
	}
	hadBridge := exec.Command("ip", "link", "show", bridge).Run() == nil
	t.Cleanup(func() {
		if !hadBridge {
			exec.Command("ip", "link", "del", bridge).Run()
		}
		if err := os.WriteFile(forwardSysctl, forward, 0o644); err != nil {
			t.Error(err)
		}
		if !strings.Contains(before, "CNI-HOSTPORT-DNAT") && strings.Contains(NatRules(t), "CNI-HOSTPORT-DNAT") {
			for _, args := range [][]string{
				{"-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				{"-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"},
				{"-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"},
				{"-F", "CNI-HOSTPORT-DNAT"}, {"-F", "CNI-HOSTPORT-MASQ"}, {"-F", "CNI-HOSTPORT-SETMARK"},
				{"-X", "CNI-HOSTPORT-DNAT"}, {"-X", "CNI-HOSTPORT-MASQ"}, {"-X", "CNI-HOSTPORT-SETMARK"},
			} {
				if out, err := exec.Command("iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput(); err != nil {
					t.Errorf("iptables %v: %v: %s", args, err, out)
				}
			}
		}
		if after := NatRules(t); after != before {
			t.Errorf("nat rules changed by the test:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

const forwardSysctl = "/proc/sys/net/ipv4/ip_forward"

// NatRules is the nat table's chains and rules, without counters.
func NatRules(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		builtin := false
		for _, c := range []string{":PREROUTING", ":INPUT", ":OUTPUT", ":POSTROUTING"} {
			builtin = builtin || strings.HasPrefix(l, c)
		}
		if strings.HasPrefix(l, "-A") || strings.HasPrefix(l, ":") && !builtin {
			rules = append(rules, strings.Fields(l)[0]+" "+strings.Join(strings.Fields(l)[1:], " "))
		}
	}
	return strings.Join(rules, "\n")
}
