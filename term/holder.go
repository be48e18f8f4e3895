package term

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ScrollbackBytes is how much recent output a holder replays to a client
// that attaches.
const ScrollbackBytes = 256 << 10

// ClientQueueBytes bounds the output queued for a client: one that lags
// further is dropped, so a client that stops reading costs the
// session and the other clients nothing.
const ClientQueueBytes = 4 << 20

// Holder keeps one session's master side. Run serves it until the
// session ends (every slave side closed).
type Holder struct {
	master *os.File
	out    io.Writer // the session's log
	log    *slog.Logger

	mu      sync.Mutex
	ring    []byte
	clients map[*client]bool
	ended   bool // the session ended: no client joins
	writers sync.WaitGroup
}

type client struct {
	conn net.Conn
	mu   sync.Mutex // one frame at a time

	// Output not yet written to conn; guarded by Holder.mu.
	queue  [][]byte
	queued int
	wake   chan struct{} // capacity 1: the queue grew or closed
	closed bool          // no more output: write what is queued, then close
}

func (c *client) send(kind byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A client that stops reading must not hold its writer forever.
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return WriteFrame(c.conn, kind, p)
}

// NewHolder serves master, writing the session's output to out.
func NewHolder(master *os.File, out io.Writer, log *slog.Logger) *Holder {
	return &Holder{master: master, out: out, log: log, clients: map[*client]bool{}}
}

// Seed starts the scrollback with p (its last ScrollbackBytes): what a
// restored copy's session showed at its checkpoint, which a client
// attaching to the copy sees first (its prompt, say), before new output.
func (h *Holder) Seed(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring = append([]byte(nil), p[max(0, len(p)-ScrollbackBytes):]...)
}

// Run accepts clients on l and copies the session's output to the log,
// the scrollback and every client, until the session ends; it returns
// once the clients have the output they were still owed.
func (h *Holder) Run(l net.Listener) error {
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go h.serve(&client{conn: conn, wake: make(chan struct{}, 1)})
		}
	}()
	defer h.writers.Wait()
	buf := make([]byte, 32<<10)
	for {
		n, err := h.master.Read(buf)
		if n > 0 {
			h.output(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			l.Close()
			h.closeClients()
			if errors.Is(err, unix.EIO) || errors.Is(err, io.EOF) {
				return nil // the last slave side closed: the session ended
			}
			return err
		}
	}
}

// output keeps p (which it owns from here on) in the log and the
// scrollback, and queues it for every client; it never waits on one.
func (h *Holder) output(p []byte) {
	if _, err := h.out.Write(p); err != nil {
		h.log.Warn("session log", "err", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring = append(h.ring, p...)
	if over := len(h.ring) - ScrollbackBytes; over > 0 {
		h.ring = append(h.ring[:0], h.ring[over:]...)
	}
	for c := range h.clients {
		if c.queued+len(p) > ClientQueueBytes {
			h.log.Warn("terminal client dropped: it fell behind", "queued", c.queued)
			h.remove(c)
			c.conn.Close()
			continue
		}
		h.enqueue(c, p)
	}
}

// enqueue and remove need h.mu.
func (h *Holder) enqueue(c *client, p []byte) {
	c.queue = append(c.queue, p)
	c.queued += len(p)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (h *Holder) remove(c *client) {
	if h.clients[c] {
		delete(h.clients, c)
		c.closed = true
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// write sends c its queued output in order until it is closed and
// drained, or a write fails.
func (h *Holder) write(c *client) {
	defer h.writers.Done()
	defer c.conn.Close()
	for {
		h.mu.Lock()
		batch, closed := c.queue, c.closed
		c.queue, c.queued = nil, 0
		h.mu.Unlock()
		for _, p := range batch {
			if err := c.send(FrameData, p); err != nil {
				h.drop(c)
				return
			}
		}
		if closed && len(batch) == 0 {
			return
		}
		if len(batch) == 0 {
			<-c.wake
		}
	}
}

func (h *Holder) drop(c *client) {
	h.mu.Lock()
	h.remove(c)
	h.mu.Unlock()
	c.conn.Close()
}

// closeClients ends every client once its writer has sent what it is owed.
func (h *Holder) closeClients() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	for c := range h.clients {
		h.remove(c)
	}
}

// serve reads one client's frames: the first says whether it attaches
// (replay, then live output) or only asks for status.
func (h *Holder) serve(c *client) {
	defer h.drop(c)
	r := bufio.NewReader(c.conn)
	kind, _, err := ReadFrame(r)
	if err != nil {
		return
	}
	if kind == FrameScrollback {
		h.mu.Lock()
		ring := append([]byte(nil), h.ring...)
		h.mu.Unlock()
		for p := ring; len(p) > 0; {
			n := min(len(p), maxFrame)
			if c.send(FrameData, p[:n]) != nil {
				return
			}
			p = p[n:]
		}
		c.send(FrameScrollback, nil)
		return
	}
	if kind == FrameReplay {
		// The replay is queued as the client joins, under one lock, so no
		// output falls between them.
		h.mu.Lock()
		if h.ended {
			h.mu.Unlock()
			return
		}
		for p := h.ring; len(p) > 0; {
			n := min(len(p), maxFrame)
			h.enqueue(c, append([]byte(nil), p[:n]...))
			p = p[n:]
		}
		h.clients[c] = true
		h.writers.Add(1)
		h.mu.Unlock()
		go h.write(c)
	}
	for {
		kind, p, err := ReadFrame(r)
		if err != nil {
			return
		}
		if err := h.handle(c, kind, p); err != nil {
			h.log.Warn("terminal client", "err", err)
			return
		}
	}
}

func (h *Holder) handle(c *client, kind byte, p []byte) error {
	switch kind {
	case FrameData:
		_, err := h.master.Write(p)
		return err
	case FrameResize:
		s, err := sizeOf(p)
		if err != nil {
			return err
		}
		return unix.IoctlSetWinsize(int(h.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Rows, Col: s.Cols})
	case FrameStatus:
		ws, err := unix.IoctlGetWinsize(int(h.master.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			return err
		}
		h.mu.Lock()
		n := len(h.clients)
		h.mu.Unlock()
		return c.send(FrameStatus, Status{Size: Size{ws.Row, ws.Col}, Clients: n}.bytes())
	}
	return nil
}
