package peer

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptd/ckptd/errdefs"
)

// issue makes a CA under dir/name-ca and a host certificate for 127.0.0.1
// under dir/name.
func issue(t *testing.T, dir, name string) string {
	t.Helper()
	ca := filepath.Join(dir, name+"-ca")
	if err := NewCA(ca, name+" CA"); err != nil {
		t.Fatal(err)
	}
	host := filepath.Join(dir, name)
	if err := IssueHost(ca, host, name, []net.IP{net.ParseIP("127.0.0.1")}, nil); err != nil {
		t.Fatal(err)
	}
	return host
}

// handshake runs a TLS server with the credentials in serverDir and a
// client with those in clientDir over loopback; it returns the client's
// and the server's error.
func handshake(t *testing.T, serverDir, clientDir string) (clientErr, serverErr error) {
	t.Helper()
	scfg, err := Config(serverDir)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := Config(clientDir)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	served := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("ok"))
		served <- err
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), ccfg)
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = io.ReadAll(c)
		c.Close()
	}
	return err, <-served
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	a := issue(t, dir, "a")
	caA := filepath.Join(dir, "a-ca")
	b := filepath.Join(dir, "b")
	if err := IssueHost(caA, b, "b", []net.IP{net.ParseIP("127.0.0.1")}, nil); err != nil {
		t.Fatal(err)
	}
	other := issue(t, dir, "other") // signed by another CA

	if cerr, serr := handshake(t, a, b); cerr != nil || serr != nil {
		t.Fatalf("peers of one CA: client %v, server %v", cerr, serr)
	}
	if cerr, serr := handshake(t, a, other); serr == nil || !strings.Contains(serr.Error(), "certificate") {
		t.Errorf("server accepted a client of another CA: client %v, server %v", cerr, serr)
	}
	if cerr, _ := handshake(t, other, a); cerr == nil || !strings.Contains(cerr.Error(), "certificate") {
		t.Errorf("client accepted a server of another CA: %v", cerr)
	}
}

func TestIssueRefusals(t *testing.T) {
	dir := t.TempDir()
	issue(t, dir, "a")
	if err := NewCA(filepath.Join(dir, "a-ca"), "again"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("CA overwritten: %v", err)
	}
	if err := IssueHost(filepath.Join(dir, "a-ca"), filepath.Join(dir, "a"), "a", []net.IP{net.ParseIP("127.0.0.1")}, nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("host key overwritten: %v", err)
	}
	if err := IssueHost(filepath.Join(dir, "a-ca"), filepath.Join(dir, "n"), "n", nil, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("certificate without address: %v", err)
	}
	if err := IssueHost(filepath.Join(dir, "none"), filepath.Join(dir, "m"), "m", []net.IP{net.ParseIP("127.0.0.1")}, nil); err == nil {
		t.Error("issued without a CA")
	}
}
