package migrate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// Handler serves the control connection of one incoming migration.
type Handler interface {
	ServeMigration(ctx context.Context, c *Conn) error
	// ServeGroup runs this host's part of a group checkpoint another
	// ckptd coordinates.
	ServeGroup(ctx context.Context, c *Conn) error
}

// Server accepts peers on a TCP address; every connection must pass mutual
// TLS before its first message is read.
type Server struct {
	ln      net.Listener
	config  *tls.Config
	handler Handler
	log     *slog.Logger
	opts    ServerOptions

	mu       sync.Mutex
	pending  map[string]*awaited // page streams awaited, by token
	incoming int                 // migrations being served
	wg       sync.WaitGroup
}

// ServerOptions bound what peers may hold.
type ServerOptions struct {
	// Idle is how long a peer may make no progress (0: DefaultIdle).
	Idle time.Duration
	// MaxIncoming caps the migrations served at once (0:
	// DefaultMaxIncoming); a peer beyond it is refused at its hello.
	MaxIncoming int
}

// DefaultMaxIncoming is the config's peer_max_incoming.
const DefaultMaxIncoming = 4

// Listen opens addr (host:port) for peers.
func Listen(addr string, config *tls.Config, h Handler, log *slog.Logger, opts ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer listener: %w", err)
	}
	if opts.MaxIncoming <= 0 {
		opts.MaxIncoming = DefaultMaxIncoming
	}
	return &Server{ln: ln, config: config, handler: h, log: log, opts: opts, pending: map[string]*awaited{}}, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts peers until ctx ends, then waits for the migrations in
// flight.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.ln.Close()
	}()
	defer s.wg.Wait()
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("peer accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, raw)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	pc := newProgressConn(raw, s.opts.Idle)
	tc := tls.Server(pc, s.config)
	c := newConn(tc, pc, raw.RemoteAddr().String(), s.config)
	c.server = s
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.log.Warn("peer refused", "remote", raw.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	m, err := c.Recv(KindHello)
	admitted := false
	switch {
	case err != nil:
	case m.Hello.Version != ProtocolVersion:
		err = fmt.Errorf("protocol version %v, this ckptd speaks %d", m.Hello, ProtocolVersion)
		c.SendError(err)
	case (m.Hello.Op == OpMigrate || m.Hello.Op == OpGroup) && !s.admit():
		err = fmt.Errorf("busy: %d incoming migrations and groups already (peer_max_incoming)", s.opts.MaxIncoming)
		c.SendError(err)
	default:
		admitted = m.Hello.Op == OpMigrate || m.Hello.Op == OpGroup
		err = c.Send(&Message{Kind: KindHello, Hello: &Hello{Version: ProtocolVersion, Op: m.Hello.Op}})
	}
	if err != nil {
		if admitted {
			s.leave()
		}
		s.log.Warn("peer hello", "peer", c.Peer(), "err", err)
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	switch m.Hello.Op {
	case OpMigrate:
		defer s.leave()
		defer tc.Close()
		if err := s.serveMigration(ctx, c); err != nil {
			s.log.Warn("incoming migration failed", "peer", c.Peer(), "err", err)
		}
	case OpPages:
		pc.unboundReads()
		s.deliverPages(m.Hello.Token, c)
	case OpGroup:
		defer s.leave()
		defer tc.Close()
		if err := s.serveGroup(ctx, c); err != nil {
			s.log.Warn("group checkpoint for a peer failed", "peer", c.Peer(), "err", err)
		}
	default:
		c.SendError(fmt.Errorf("unknown operation %q", m.Hello.Op))
		tc.Close()
	}
}

// admit counts one more migration served, if the cap allows.
func (s *Server) admit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.incoming >= s.opts.MaxIncoming {
		return false
	}
	s.incoming++
	return true
}

func (s *Server) leave() {
	s.mu.Lock()
	s.incoming--
	s.mu.Unlock()
}

// serveMigration runs the handler; a panic in it fails this migration
// only, and the peer hears of it.
func (s *Server) serveMigration(ctx context.Context, c *Conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("incoming migration handler panicked", "peer", c.Peer(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", r)
			c.SendError(errors.New("the destination failed internally; see its log"))
		}
	}()
	return s.handler.ServeMigration(ctx, c)
}

// serveGroup runs the handler's part of a group; a panic in it fails
// that group only, and the coordinator hears of it.
func (s *Server) serveGroup(ctx context.Context, c *Conn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("group handler panicked", "peer", c.Peer(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", r)
			c.SendError(errors.New("the participant failed internally; see its log"))
		}
	}()
	return s.handler.ServeGroup(ctx, c)
}

// awaited is a page stream's connections still to come.
type awaited struct {
	ch   chan net.Conn // buffered for all of them
	left int
}

func (s *Server) deliverPages(token string, c *Conn) {
	s.mu.Lock()
	a := s.pending[token]
	if a != nil {
		if a.left--; a.left == 0 {
			delete(s.pending, token)
		}
	}
	s.mu.Unlock()
	if a == nil {
		s.log.Warn("page stream for no migration", "peer", c.Peer())
		c.conn.Close()
		return
	}
	a.ch <- c.conn // buffered: never blocks
}

// ExpectPages registers a page stream of n connections for this
// migration. The token goes to the source in the Report; wait returns
// the next connection once the source dials it; cancel withdraws the
// token and closes what came but was not taken.
func (c *Conn) ExpectPages(n int) (token string, wait func(context.Context) (net.Conn, error), cancel func(), err error) {
	s := c.server
	if s == nil {
		return "", nil, nil, errors.New("not an accepted connection")
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, nil, err
	}
	token = hex.EncodeToString(b[:])
	ch := make(chan net.Conn, n)
	s.mu.Lock()
	s.pending[token] = &awaited{ch: ch, left: n}
	s.mu.Unlock()
	cancel = func() {
		s.mu.Lock()
		delete(s.pending, token)
		s.mu.Unlock()
		for {
			select {
			case pc := <-ch:
				pc.Close()
			default:
				return
			}
		}
	}
	wait = func(ctx context.Context) (net.Conn, error) {
		select {
		case pc := <-ch:
			return pc, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return token, wait, cancel, nil
}
