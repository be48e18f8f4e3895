package migrate

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/ckptd/ckptd/store"
)

// FuzzReadMessage: any bytes from a peer read as one framed message or
// fail cleanly, never allocating more than maxMessage; a message that
// passes validation carries what its kind promises.
func FuzzReadMessage(f *testing.F) {
	for _, m := range []*Message{
		{Kind: KindHello, Hello: &Hello{Version: 1, Op: OpMigrate}},
		{Kind: KindOffer, Offer: &Offer{Target: store.TargetRef{Kind: store.KindWorkload, Name: "w"}, Files: []FileNeed{{Path: "/bin/sh"}}}},
		{Kind: KindFile, File: &File{Name: "pages-1.img", Size: 4096}},
		{Kind: KindCommit, Commit: &Commit{Checkpoint: &store.Checkpoint{Target: store.TargetRef{Kind: store.KindProcess, PID: 7}}}},
		{Kind: KindRestored, Restored: &Restored{Checkpoint: "c", Name: "w", PID: 1}},
		{Kind: KindError, Error: "no"},
	} {
		var buf bytes.Buffer
		if err := writeMessage(&buf, m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	var huge [4]byte
	binary.BigEndian.PutUint32(huge[:], 1<<31)
	f.Add(huge[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := readMessage(bytes.NewReader(data))
		if err != nil {
			return
		}
		switch m.Kind {
		case KindFile:
			if filepath.Base(m.File.Name) != m.File.Name || m.File.Name == ".." || m.File.Size < 0 {
				t.Fatalf("validated file header %+v", m.File)
			}
		case KindOffer:
			if m.Offer.Target.Kind == store.KindWorkload && store.ValidateName(m.Offer.Target.Name) != nil {
				t.Fatalf("validated offer of workload %q", m.Offer.Target.Name)
			}
		case KindCommit:
			if m.Commit.Checkpoint == nil {
				t.Fatal("validated commit without checkpoint")
			}
		case KindRestored, KindDone, KindReport, KindHello:
			if m.Restored == nil && m.Done == nil && m.Report == nil && m.Hello == nil {
				t.Fatalf("validated %s without its body", m.Kind)
			}
		}
	})
}
