package migrate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// handshakeTimeout bounds the TLS handshake and the hello exchange, so a
// silent or unauthenticated peer cannot hold a connection open.
const handshakeTimeout = 10 * time.Second

// Conn is one authenticated connection to a peer ckptd. Every read and
// write on it ends when the peer makes no progress for its idle time
// (see progressConn); a side busy for longer keeps it alive with Beat.
type Conn struct {
	conn   *tls.Conn
	raw    *progressConn
	r      *bufio.Reader
	w      *bufio.Writer
	sendMu sync.Mutex // one message (or file) at a time
	addr   string
	config *tls.Config
	idle   time.Duration
	server *Server // on the accepting side: where page streams arrive
}

// Dial connects to the ckptd at addr (host:port) for one migration, which
// ends when the peer makes no progress for idle (0: DefaultIdle). The
// peer must present a certificate from our CA and accept ours; a refusal
// fails here, before anything is sent.
func Dial(ctx context.Context, addr string, config *tls.Config, idle time.Duration) (*Conn, error) {
	return dial(ctx, addr, config, idle, Hello{Version: ProtocolVersion, Op: OpMigrate})
}

func dial(ctx context.Context, addr string, config *tls.Config, idle time.Duration, hello Hello) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	pc := newProgressConn(raw, idle)
	cfg := config.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(pc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	c := newConn(tc, pc, addr, config)
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	// In TLS 1.3 the server judges our certificate after our handshake
	// ends; its answer to the hello is where a refusal shows.
	if err := c.Send(&Message{Kind: KindHello, Hello: &hello}); err != nil {
		tc.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	if _, err := c.Recv(KindHello); err != nil {
		tc.Close()
		return nil, fmt.Errorf("%s refused us: %w", addr, err)
	}
	tc.SetDeadline(time.Time{})
	return c, nil
}

func newConn(tc *tls.Conn, raw *progressConn, addr string, config *tls.Config) *Conn {
	return &Conn{conn: tc, raw: raw, r: bufio.NewReaderSize(tc, 256<<10), w: bufio.NewWriterSize(tc, 256<<10),
		addr: addr, config: config, idle: raw.idle}
}

// DialPages opens the page stream of the migration whose Report carried
// token, to the same peer. Its reads wait as long as the kernel keeps the
// connection: CRIU's page server acknowledges seldom.
func (c *Conn) DialPages(ctx context.Context, token string) (net.Conn, error) {
	p, err := dial(ctx, c.addr, c.config, c.idle, Hello{Version: ProtocolVersion, Op: OpPages, Token: token})
	if err != nil {
		return nil, err
	}
	p.raw.unboundReads()
	if p.r.Buffered() > 0 {
		p.conn.Close()
		return nil, fmt.Errorf("%s sent data before the page stream", c.addr)
	}
	return p.conn, nil
}

// Peer names the other side: its certificate's common name and address.
func (c *Conn) Peer() string {
	st := c.conn.ConnectionState()
	name := "?"
	if len(st.PeerCertificates) > 0 {
		name = st.PeerCertificates[0].Subject.CommonName
	}
	return fmt.Sprintf("%s (%s)", name, c.conn.RemoteAddr())
}

// Send writes one message.
func (c *Conn) Send(m *Message) error {
	if err := c.failpoint(m.Kind); err != nil {
		return err
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := writeMessage(c.w, m); err != nil {
		return c.silent(err)
	}
	return c.silent(c.w.Flush())
}

// silent names a deadline the peer let pass for what it is.
func (c *Conn) silent(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s made no progress for %s: %w", c.addr, c.idle, ErrSilent)
	}
	return err
}

// Idle is how long the peer may make no progress.
func (c *Conn) Idle() time.Duration { return c.idle }

// Beat tells the peer, at a third of its idle time, that this side is
// alive while it works without sending (a dump, a restore), until stop.
// A beat that cannot be sent ends the beating: the next Send or Recv
// says why.
func (c *Conn) Beat() (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(c.idle / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if c.Send(&Message{Kind: KindAlive}) != nil {
					return
				}
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}

// failpoint cuts the connection before a message of kind in test builds
// (see failpoint_on.go); it does nothing otherwise.
func (c *Conn) failpoint(kind string) error {
	pause(kind)
	if cutBefore == "" || kind != cutBefore {
		return nil
	}
	c.conn.Close()
	return fmt.Errorf("failpoint: connection cut before %q", kind)
}

// SendError tells the peer why this side gives up.
func (c *Conn) SendError(err error) error {
	return c.Send(&Message{Kind: KindError, Error: err.Error()})
}

// Recv reads the next message, which must be of kind; a peer's error
// message comes back as an error wrapping ErrRemote.
func (c *Conn) Recv(kind string) (*Message, error) {
	m, err := c.Next()
	if err != nil {
		return nil, err
	}
	if m.Kind != kind {
		return nil, fmt.Errorf("protocol: got %q, want %q", m.Kind, kind)
	}
	return m, nil
}

// Next reads the next message of any kind but error, skipping beats.
func (c *Conn) Next() (*Message, error) {
	for {
		m, err := readMessage(c.r)
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("%s closed the connection", c.addr)
		case err != nil:
			return nil, c.silent(err)
		case m.Kind == KindError:
			return nil, fmt.Errorf("%w: %s", ErrRemote, m.Error)
		case m.Kind != KindAlive:
			return m, nil
		}
	}
}

// SetDeadline bounds the next reads and writes; zero clears it.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close ends the connection.
func (c *Conn) Close() error { return c.conn.Close() }

// SendFile sends the regular file dir/name; progress, if set, counts bytes.
func (c *Conn) SendFile(dir, name string, progress func(int64)) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := c.failpoint(KindFile); err != nil {
		return err
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := writeMessage(c.w, &Message{Kind: KindFile, File: &File{Name: name, Size: st.Size()}}); err != nil {
		return err
	}
	n, err := io.Copy(c.w, io.LimitReader(f, st.Size()))
	if err != nil {
		return fmt.Errorf("send %s: %w", name, c.silent(err))
	}
	if n != st.Size() {
		return fmt.Errorf("send %s: it shrank while being sent", name)
	}
	if progress != nil {
		progress(n)
	}
	return c.silent(c.w.Flush())
}

// diskReserve is what RecvFile leaves free on the receiving file system.
const diskReserve = 256 << 20

// RecvFile writes the contents that follow header f into dir. The name
// must be a plain file name: a peer cannot write outside dir, nor fill
// its file system.
func (c *Conn) RecvFile(dir string, f *File) error {
	if f == nil || !plainName(f.Name) || f.Size < 0 || f.Size > maxFileSize {
		return fmt.Errorf("protocol: bad file header %+v", f)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return err
	}
	if free := int64(fs.Bavail) * fs.Bsize; f.Size > free-diskReserve {
		return fmt.Errorf("receive %s: %d bytes do not fit in the %d free here", f.Name, f.Size, free)
	}
	out, err := os.OpenFile(filepath.Join(dir, f.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(out, c.r, f.Size); err != nil {
		out.Close()
		return fmt.Errorf("receive %s: %w", f.Name, err)
	}
	return out.Close()
}

func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
