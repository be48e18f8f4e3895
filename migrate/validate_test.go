package migrate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptd/ckptd/peer"
	"github.com/ckptd/ckptd/store"
)

func TestValidate(t *testing.T) {
	wl := store.TargetRef{Kind: store.KindWorkload, Name: "w"}
	token := strings.Repeat("ab", 16)
	for _, tc := range []struct {
		name string
		m    Message
		ok   bool
	}{
		{"hello", Message{Kind: KindHello, Hello: &Hello{Version: 1, Op: OpMigrate}}, true},
		{"hello without body", Message{Kind: KindHello}, false},
		{"hello unknown op", Message{Kind: KindHello, Hello: &Hello{Op: "x"}}, false},
		{"pages bad token", Message{Kind: KindHello, Hello: &Hello{Op: OpPages, Token: "../x"}}, false},
		{"pages", Message{Kind: KindHello, Hello: &Hello{Op: OpPages, Token: token}}, true},
		{"pages answer", Message{Kind: KindHello, Hello: &Hello{Op: OpPages}}, true},
		{"offer", Message{Kind: KindOffer, Offer: &Offer{Target: wl}}, true},
		{"offer without body", Message{Kind: KindOffer}, false},
		{"offer escaping name", Message{Kind: KindOffer, Offer: &Offer{Target: store.TargetRef{Kind: store.KindWorkload, Name: "../../x"}}}, false},
		{"offer unknown kind", Message{Kind: KindOffer, Offer: &Offer{Target: store.TargetRef{Kind: "vm", Name: "x"}}}, false},
		{"offer container without record", Message{Kind: KindOffer, Offer: &Offer{Target: store.TargetRef{Kind: store.KindContainer, Name: "default/c"}}}, false},
		{"offer process pid 0", Message{Kind: KindOffer, Offer: &Offer{Target: store.TargetRef{Kind: store.KindProcess}}}, false},
		{"offer negative memory", Message{Kind: KindOffer, Offer: &Offer{Target: wl, MemoryBytes: -1}}, false},
		{"offer relative file", Message{Kind: KindOffer, Offer: &Offer{Target: wl, Files: []FileNeed{{Path: "etc/passwd"}}}}, false},
		{"offer bad pid", Message{Kind: KindOffer, Offer: &Offer{Target: wl, PIDs: []int{-1}}}, false},
		{"offer post-copy", Message{Kind: KindOffer, Offer: &Offer{Target: wl, Lazy: true, PageStream: true}}, true},
		{"offer post-copy without pages", Message{Kind: KindOffer, Offer: &Offer{Target: wl, Lazy: true}}, false},
		{"offer post-copy fenced", Message{Kind: KindOffer, Offer: &Offer{Target: wl, Lazy: true, PageStream: true, Fenced: true}}, false},
		{"offer post-copy in rounds", Message{Kind: KindOffer, Offer: &Offer{Target: wl, Lazy: true, PageStream: true, Rounds: 2}}, false},
		{"report", Message{Kind: KindReport, Report: &Report{Token: token}}, true},
		{"report peer timeout", Message{Kind: KindReport, Report: &Report{IdleMs: 30_000}}, true},
		{"report negative peer timeout", Message{Kind: KindReport, Report: &Report{IdleMs: -1}}, false},
		{"report peer timeout over a day", Message{Kind: KindReport, Report: &Report{IdleMs: maxIdleMs + 1}}, false},
		{"report without body", Message{Kind: KindReport}, false},
		{"report long problem", Message{Kind: KindReport, Report: &Report{Problems: []string{strings.Repeat("x", maxTextLen+1)}}}, false},
		{"file", Message{Kind: KindFile, File: &File{Name: "pages-1.img", Size: 10}}, true},
		{"file without header", Message{Kind: KindFile}, false},
		{"file escaping", Message{Kind: KindFile, File: &File{Name: "../x"}}, false},
		{"file huge", Message{Kind: KindFile, File: &File{Name: "x", Size: maxFileSize + 1}}, false},
		{"commit", Message{Kind: KindCommit, Commit: &Commit{Checkpoint: &store.Checkpoint{Target: wl}}}, true},
		{"commit without checkpoint", Message{Kind: KindCommit, Commit: &Commit{}}, false},
		{"commit without body", Message{Kind: KindCommit}, false},
		{"restored", Message{Kind: KindRestored, Restored: &Restored{Checkpoint: "c", Name: "w", PID: 7}}, true},
		{"restored without body", Message{Kind: KindRestored}, false},
		{"restored after post-copy", Message{Kind: KindRestored, Restored: &Restored{Name: "w", PID: 7}}, true},
		{"restored pid 0", Message{Kind: KindRestored, Restored: &Restored{Checkpoint: "c", Name: "w"}}, false},
		{"done", Message{Kind: KindDone, Done: &Done{}}, true},
		{"done without body", Message{Kind: KindDone}, false},
		{"error", Message{Kind: KindError, Error: "no"}, true},
		{"unknown kind", Message{Kind: "surprise"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeMessage(&buf, &tc.m); err != nil {
				t.Fatal(err)
			}
			_, err := readMessage(&buf)
			if (err == nil) != tc.ok {
				t.Errorf("readMessage: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

type panicky struct{}

func (panicky) ServeMigration(ctx context.Context, c *Conn) error { panic("handler bug") }
func (panicky) ServeGroup(ctx context.Context, c *Conn) error     { panic("handler bug") }

// TestHandlerPanicFailsOnlyItsMigration: a panic in the handler reaches
// the peer as an error and the server goes on serving.
func TestHandlerPanicFailsOnlyItsMigration(t *testing.T) {
	dir := t.TempDir()
	if err := peer.NewCA(filepath.Join(dir, "ca"), "test CA"); err != nil {
		t.Fatal(err)
	}
	if err := peer.IssueHost(filepath.Join(dir, "ca"), filepath.Join(dir, "h"), "h", []net.IP{net.IPv4(127, 0, 0, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := peer.Config(filepath.Join(dir, "h"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", cfg, panicky{}, slog.New(slog.NewTextHandler(io.Discard, nil)), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()
	for range 2 {
		c, err := Dial(ctx, srv.Addr().String(), cfg, 0)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Recv(KindReport); !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "internally") {
			t.Errorf("after the handler panicked: %v", err)
		}
		c.Close()
	}
}
