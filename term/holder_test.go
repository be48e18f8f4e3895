package term

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestHolderClientFallsBehind: a client that stops reading neither holds
// up the session's output to the others nor stays attached once it lags
// by more than ClientQueueBytes; at the session's end every client gets
// all it is owed, then EOF.
func TestHolderClientFallsBehind(t *testing.T) {
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer slave.Close()
	if _, err := MakeRaw(int(slave.Fd())); err != nil { // the bytes arrive as written
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "tty.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "output.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	done := make(chan error, 1)
	go func() { done <- NewHolder(master, logFile, slog.New(slog.DiscardHandler)).Run(l) }()

	fast, err := Attach(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	stuck, err := Attach(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.conn.(*net.UnixConn).SetReadBuffer(4 << 10)
	waitClients(t, sock, 2)

	var want bytes.Buffer
	wrote := make(chan error, 3)
	say := func(p []byte) {
		want.Write(p)
		go func() { _, err := slave.Write(p); wrote <- err }()
	}
	var got bytes.Buffer
	readUntil := func(n int) {
		for got.Len() < n {
			p, err := fast.Output()
			if err != nil {
				t.Fatalf("the reading client, after %d of %d bytes: %v", got.Len(), n, err)
			}
			got.Write(p)
		}
	}

	// Far more than the socket buffers hold, within the stuck one's queue.
	say(bytes.Repeat([]byte("a"), 2<<20))
	readUntil(2 << 20)
	if st, err := Query(sock); err != nil || st.Clients != 2 {
		t.Fatalf("with the output delivered: %+v, %v; want the stuck client still attached", st, err)
	}

	say(bytes.Repeat([]byte("b"), ClientQueueBytes+(1<<20)))
	readUntil(2<<20 + ClientQueueBytes + 1<<20)
	waitClients(t, sock, 1)
	stuck.conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard, not a measure
	for {
		if _, err := stuck.Output(); err != nil {
			if !errors.Is(err, ErrDropped) {
				t.Fatalf("the stuck client's end: %v, want ErrDropped", err)
			}
			break
		}
	}

	say([]byte("bye"))
	for range 3 {
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	}
	slave.Close()
	for {
		p, err := fast.Output()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("at the session's end: %v", err)
			}
			break
		}
		got.Write(p)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the reading client got %d bytes, not the %d the session wrote", got.Len(), want.Len())
	}
	if err := <-done; err != nil {
		t.Fatalf("holder: %v", err)
	}
}

func waitClients(t *testing.T, sock string, n int) {
	t.Helper()
	for i := 0; ; i++ {
		st, err := Query(sock)
		if err == nil && st.Clients == n {
			return
		}
		if i == 500 {
			t.Fatalf("the holder has %+v (%v), want %d clients", st, err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
