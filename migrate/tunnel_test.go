package migrate

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestTunnelHold: a tunnel passes the peer's end of stream on to CRIU's
// side, and closes CRIU's side when the peer fails; held, it does
// neither, and CRIU's side sees nothing until the caller closes it.
func TestTunnelHold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hold      bool
		fail      bool // the peer resets instead of ending its stream
		wantLocal error
	}{
		{"end passed on", false, false, io.EOF},
		{"end held", true, false, os.ErrDeadlineExceeded},
		{"failure closes", false, true, io.EOF},
		{"failure held", true, true, os.ErrDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, criu := tcpPair(t)
			remote, peer := tcpPair(t)
			tun := &Tunnel{Hold: tc.hold}
			done := make(chan error, 1)
			go func() { done <- tun.Run(context.Background(), local, remote) }()

			if _, err := peer.Write([]byte("page")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(criu, buf); err != nil || string(buf) != "page" {
				t.Fatalf("CRIU's side read %q, %v", buf, err)
			}
			if tc.fail {
				peer.SetLinger(0)
				peer.Close()
			} else {
				peer.CloseWrite()
			}
			criu.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := criu.Read(buf); !errors.Is(err, tc.wantLocal) {
				t.Errorf("CRIU's side then read: %v, want %v", err, tc.wantLocal)
			}
			if !tc.fail {
				// CRIU ends its own stream: the tunnel is done.
				criu.CloseWrite()
			}
			if tc.hold && tc.fail {
				select {
				case err := <-done:
					if err == nil {
						t.Error("a reset peer ended a held tunnel without an error")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("a held tunnel did not return after its peer failed")
				}
				return
			}
			select {
			case err := <-done:
				if tc.fail != (err != nil) {
					t.Errorf("Run: %v, want failure %v", err, tc.fail)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the tunnel did not end")
			}
		})
	}
}

// tcpPair returns both ends of one loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
