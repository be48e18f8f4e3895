// Package migrate is the daemon-to-daemon wire: mutual-TLS connections,
// the messages of a migration, image files, and the tunnel that carries
// CRIU's page-server stream. What the messages mean to a source or a
// destination is the daemon's business; this package only moves them.
package migrate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ckptd/ckptd/store"
)

// ProtocolVersion changes whenever a message changes incompatibly.
const ProtocolVersion = 3

// maxMessage bounds one framed message; file contents are not messages.
const maxMessage = 8 << 20

// Kinds of messages.
const (
	KindHello    = "hello"
	KindOffer    = "offer"
	KindReport   = "report"
	KindFile     = "file"
	KindCommit   = "commit"
	KindRestored = "restored"
	KindDone     = "done"
	KindError    = "error"
	// KindAlive says the sender works and is alive (Conn.Beat); it
	// carries nothing, and Next skips it.
	KindAlive = "alive"
	// KindRound opens a pre-copy round: the files that follow are its
	// images, whose unchanged pages are read from the round before.
	KindRound = "round"
)

// Operations a connection can open with.
const (
	OpMigrate = "migrate" // the control connection of one migration
	OpPages   = "pages"   // the page stream of a migration, by token
)

// Message is the one envelope every frame carries; Kind says which field
// is set.
type Message struct {
	Kind     string     `json:"kind"`
	Hello    *Hello     `json:"hello,omitempty"`
	Offer    *Offer     `json:"offer,omitempty"`
	Report   *Report    `json:"report,omitempty"`
	File     *File      `json:"file,omitempty"`
	Commit   *Commit    `json:"commit,omitempty"`
	Restored *Restored  `json:"restored,omitempty"`
	Done     *Done      `json:"done,omitempty"`
	Round    *Round     `json:"round,omitempty"`
	Group    *GroupStep `json:"group,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Hello opens every connection.
type Hello struct {
	Version int    `json:"version"`
	Op      string `json:"op"`
	Token   string `json:"token,omitempty"` // OpPages: the session's token from its Report
}

// Offer is the source's pre-flight description of what it will send.
type Offer struct {
	SourceHost  string               `json:"source_host"`
	Target      store.TargetRef      `json:"target"`
	Name        string               `json:"name"` // the target's name on the destination
	CRIUVersion int                  `json:"criu_version"`
	Kernel      string               `json:"kernel"`
	CPUInfo     []byte               `json:"cpuinfo"`  // `criu cpuinfo dump` image of the source
	Features    []string             `json:"features"` // CRIU kernel features the source has
	MemoryBytes int64                `json:"memory_bytes"`
	Files       []FileNeed           `json:"files"`          // what the images will refer to
	PIDs        []int                `json:"pids,omitempty"` // host PIDs a host process restores into
	Container   *store.ContainerInfo `json:"container,omitempty"`
	Options     store.Options        `json:"options"`
	PageStream  bool                 `json:"page_stream"` // pages come through a page server
	// Fenced asks the destination to keep the restored tree stopped until
	// the source confirms its own copy is gone (Done.SourceStopped).
	Fenced bool `json:"fenced,omitempty"`
	// Rounds, when set, is the most pre-copy rounds the source sends
	// (the frozen one included) before its commit: the target is
	// restored from the last, a chain over the others.
	Rounds int `json:"rounds,omitempty"`
	// Streams is how many connections the source would stripe its page
	// stream over (RunStriped); the report says how many it may.
	Streams int `json:"streams,omitempty"`
	// Lazy asks for post-copy: the destination runs the target at once
	// and fetches its memory through the page stream from the source's
	// CRIU, which serves it until the destination has every page.
	Lazy bool `json:"lazy,omitempty"`
}

// Round numbers a pre-copy round, from 1.
type Round struct {
	N int `json:"n"`
}

// FileNeed is a path the restored tree opens or maps, as the source sees it.
type FileNeed struct {
	Path string `json:"path"`
	Size int64  `json:"size"` // regular files: CRIU refuses another size
	Dir  bool   `json:"dir,omitempty"`
	Use  string `json:"use"` // "executable", "mapped", "cwd", "root"
}

// Report is the destination's verdict on an offer.
type Report struct {
	Problems []string `json:"problems,omitempty"`
	Token    string   `json:"token,omitempty"` // for the page stream, when accepted
	// IdleMs is the destination's peer timeout: a post-copy source that
	// loses the destination waits that long, and its own, before its
	// copy may resume, so that the destination has ended its copy first.
	IdleMs int64 `json:"idle_ms,omitempty"`
	// Streams is how many connections the page stream takes, at most the
	// offer's; 0 or 1, one unframed.
	Streams int `json:"streams,omitempty"`
}

// File precedes Size raw bytes of an image file.
type File struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// Commit follows the files: the record of the checkpoint the destination
// now holds whole. The source is frozen until the answer.
type Commit struct {
	Checkpoint *store.Checkpoint `json:"checkpoint"`
}

// Restored says the destination runs the target.
type Restored struct {
	Checkpoint string   `json:"checkpoint,omitempty"` // id in the destination's store; none after post-copy
	Name       string   `json:"name"`
	PID        int      `json:"pid"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Done is the source's last word: whether it stopped its copy.
type Done struct {
	SourceStopped bool             `json:"source_stopped"`
	Stats         *store.DumpStats `json:"stats,omitempty"` // CRIU's, known only now
}

// ErrRemote is a failure the peer reported.
var ErrRemote = errors.New("peer reported")

// ErrSilent marks a peer that made no progress for its idle time.
var ErrSilent = errors.New("the peer went silent")

func writeMessage(w io.Writer, m *Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > maxMessage {
		return fmt.Errorf("%s message of %d bytes is too large", m.Kind, len(data))
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(data)))
	if _, err := w.Write(append(hdr[:], data...)); err != nil {
		return err
	}
	return nil
}

func readMessage(r io.Reader) (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMessage {
		return nil, fmt.Errorf("message of %d bytes is too large", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	m := &Message{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("protocol: bad message: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("protocol: %s: %w", m.Kind, err)
	}
	return m, nil
}
