package migrate

import (
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultIdle is how long a peer may make no progress before its
// migration ends: the config's peer_timeout.
const DefaultIdle = 30 * time.Second

// progressConn bounds every read and write on a peer's TCP connection by
// idle from the moment it starts: a peer that neither acknowledges our
// bytes nor sends any for that long is gone, whatever the phase. A
// deadline its owner sets (SetDeadline) still holds when it is sooner.
// Reads may be left unbounded (page streams, whose acknowledgements come
// seldom): the kernel's keepalive and user timeout still end them.
type progressConn struct {
	net.Conn
	idle time.Duration

	mu                    sync.Mutex
	readIdle              bool
	readLimit, writeLimit time.Time
}

func newProgressConn(c net.Conn, idle time.Duration) *progressConn {
	if idle <= 0 {
		idle = DefaultIdle
	}
	tuneTCP(c, idle)
	return &progressConn{Conn: c, idle: idle, readIdle: true}
}

// tuneTCP makes the kernel end the connection when the peer acknowledges
// nothing for idle: data we sent (TCP_USER_TIMEOUT, which also bounds
// zero-window probes), or keepalive probes while we only wait.
func tuneTCP(c net.Conn, idle time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle / 3, Interval: idle / 6, Count: 4})
	if raw, err := tc.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(idle.Milliseconds()))
		})
	}
}

func (c *progressConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	dl := c.readLimit
	if c.readIdle {
		dl = sooner(dl, time.Now().Add(c.idle))
	}
	c.mu.Unlock()
	if err := c.Conn.SetReadDeadline(dl); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *progressConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	dl := sooner(c.writeLimit, time.Now().Add(c.idle))
	c.mu.Unlock()
	if err := c.Conn.SetWriteDeadline(dl); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *progressConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readLimit, c.writeLimit = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *progressConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readLimit = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *progressConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeLimit = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// unboundReads lets reads wait as long as the kernel keeps the
// connection.
func (c *progressConn) unboundReads() {
	c.mu.Lock()
	c.readIdle = false
	c.mu.Unlock()
}

// sooner is the earlier of two deadlines, zero meaning none.
func sooner(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
