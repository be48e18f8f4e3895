package migrate

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestProgressConn: a read ends when the peer sends nothing for idle, not
// while it keeps sending; a deadline set by the owner still holds; reads
// left unbounded wait on.
func TestProgressConn(t *testing.T) {
	const idle = 200 * time.Millisecond
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newProgressConn(a, idle)
	buf := make([]byte, 1)

	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent peer: %v, want a deadline error", err)
	}

	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(idle / 4):
				b.Write([]byte{1})
			}
		}
	}()
	for end := time.Now().Add(3 * idle); time.Now().Before(end); {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("a peer making progress was cut off: %v", err)
		}
	}
	close(stop)

	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the owner's past deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})

	c.unboundReads()
	got := make(chan error, 1)
	go func() { _, err := c.Read(buf); got <- err }()
	select {
	case err := <-got:
		t.Fatalf("an unbounded read ended: %v", err)
	case <-time.After(3 * idle):
	}
	b.Write([]byte{1})
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	if _, err := c.Write([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write nobody reads: %v, want a deadline error", err)
	}
}

func TestSooner(t *testing.T) {
	now := time.Now()
	later := now.Add(time.Second)
	for _, tc := range []struct{ a, b, want time.Time }{
		{time.Time{}, now, now},
		{now, time.Time{}, now},
		{later, now, now},
		{now, later, now},
		{time.Time{}, time.Time{}, time.Time{}},
	} {
		if got := sooner(tc.a, tc.b); !got.Equal(tc.want) {
			t.Errorf("sooner(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
