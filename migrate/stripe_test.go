package migrate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestRunStriped: pages written on the sender's side arrive whole and in
// order on the receiver's, whatever the number of connections, with the
// end of stream passed on; the answers going back arrive too. A frame
// larger than a chunk, or a connection reset midway, fails the receiver.
func TestRunStriped(t *testing.T) {
	for _, n := range []int{2, 3, 8} {
		t.Run(fmt.Sprintf("%d streams", n), func(t *testing.T) {
			pages := make([]byte, 5<<20+123)
			rand.Read(pages)
			srcCRIU, dstCRIU, done := stripedPair(t, n)

			go func() {
				srcCRIU.Write(pages)
				srcCRIU.CloseWrite()
			}()
			got, err := io.ReadAll(dstCRIU)
			if err != nil || !bytes.Equal(got, pages) {
				t.Fatalf("%d streams: received %d bytes (%v), want the %d sent, in order", n, len(got), err, len(pages))
			}
			// The page server answers, and ends its side.
			dstCRIU.Write([]byte("ok"))
			dstCRIU.CloseWrite()
			answer, err := io.ReadAll(srcCRIU)
			if err != nil || string(answer) != "ok" {
				t.Fatalf("answer %q, %v", answer, err)
			}
			for range 2 {
				if err := <-done; err != nil {
					t.Errorf("a tunnel ended with %v", err)
				}
			}
		})
	}
}

func TestRunStripedRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(conns []*net.TCPConn)
	}{
		{"frame too large", func(conns []*net.TCPConn) {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], stripeChunk+1)
			conns[0].Write(hdr[:])
		}},
		{"connection reset", func(conns []*net.TCPConn) {
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], 10)
			conns[0].Write(append(hdr[:], 1, 2, 3))
			conns[0].SetLinger(0)
			conns[0].Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, _ := tcpPair(t)
			var remotes []HalfCloser
			var peers []*net.TCPConn
			for range 2 {
				a, b := tcpPair(t)
				remotes, peers = append(remotes, a), append(peers, b)
			}
			done := make(chan error, 1)
			tun := &Tunnel{}
			go func() { done <- tun.RunStriped(context.Background(), local, remotes, false) }()
			tc.write(peers)
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the receiver took it")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the receiver did not fail")
			}
		})
	}
}

// stripedPair joins a sender and a receiver tunnel over n connections;
// it returns the CRIU ends of both and where the tunnels report.
func stripedPair(t *testing.T, n int) (src, dst *net.TCPConn, done chan error) {
	srcLocal, src := tcpPair(t)
	dstLocal, dst := tcpPair(t)
	var sends, recvs []HalfCloser
	for range n {
		a, b := tcpPair(t)
		sends, recvs = append(sends, a), append(recvs, b)
	}
	done = make(chan error, 2)
	go func() { done <- (&Tunnel{}).RunStriped(context.Background(), srcLocal, sends, true) }()
	go func() { done <- (&Tunnel{}).RunStriped(context.Background(), dstLocal, recvs, false) }()
	return src, dst, done
}

// FuzzReadFrames: whatever a peer sends as a striped stream, frames are
// bounded, and the reader ends at an end frame or an error.
func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 4, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		q := make(chan frame, 1)
		done := make(chan struct{})
		defer close(done)
		go readFrames(bytes.NewReader(data), q, done)
		for {
			fr := <-q
			if fr.err != nil {
				return
			}
			if len(*fr.b) > stripeChunk {
				t.Fatalf("a frame of %d bytes", len(*fr.b))
			}
			if len(*fr.b) == 0 {
				return
			}
		}
	})
}
