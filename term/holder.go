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

// Holder keeps one session's master side. Run serves it until the
// session ends (every slave side closed).
type Holder struct {
	master *os.File
	out    io.Writer // the session's log
	log    *slog.Logger

	mu      sync.Mutex
	ring    []byte
	clients map[*client]bool
}

type client struct {
	conn net.Conn
	mu   sync.Mutex // one frame at a time
}

func (c *client) send(kind byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A client that stops reading must not stall the session.
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return WriteFrame(c.conn, kind, p)
}

// NewHolder serves master, writing the session's output to out.
func NewHolder(master *os.File, out io.Writer, log *slog.Logger) *Holder {
	return &Holder{master: master, out: out, log: log, clients: map[*client]bool{}}
}

// Run accepts clients on l and copies the session's output to the log,
// the scrollback and every client, until the session ends.
func (h *Holder) Run(l net.Listener) error {
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go h.serve(&client{conn: conn})
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := h.master.Read(buf)
		if n > 0 {
			h.output(buf[:n])
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

func (h *Holder) output(p []byte) {
	if _, err := h.out.Write(p); err != nil {
		h.log.Warn("session log", "err", err)
	}
	h.mu.Lock()
	h.ring = append(h.ring, p...)
	if over := len(h.ring) - ScrollbackBytes; over > 0 {
		h.ring = append(h.ring[:0], h.ring[over:]...)
	}
	clients := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		if err := c.send(FrameData, p); err != nil {
			h.drop(c)
		}
	}
}

func (h *Holder) drop(c *client) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
	c.conn.Close()
}

func (h *Holder) closeClients() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		c.conn.Close()
		delete(h.clients, c)
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
	if kind == FrameReplay {
		// The replay and joining the clients happen under one lock, so no
		// output falls between them.
		h.mu.Lock()
		err := sendChunks(c, h.ring)
		if err == nil {
			h.clients[c] = true
		}
		h.mu.Unlock()
		if err != nil {
			return
		}
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

func sendChunks(c *client, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		if err := c.send(FrameData, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
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
