package daemon

import (
	"context"
	"net"
	"os"

	"github.com/ckptd/ckptd/migrate"
)

// pageStream is the source's end of a page stream: CRIU gets theirs as a
// descriptor, and the tunnel joins local to the peer until done.
type pageStream struct {
	local  *net.TCPConn
	theirs *os.File
	done   chan error
	close  func()
}

// openPages dials the page stream the report gave a token for, over as
// many connections as it says, and starts its tunnel, which runs until
// tctx ends. CRIU's page stream goes through a connection made here,
// which CRIU gets as a descriptor: no listener waits for it that another
// local user could connect to first.
func (m *outgoing) openPages(ctx, tctx context.Context, report *migrate.Report, tunnel *migrate.Tunnel) (*pageStream, error) {
	var pages []net.Conn
	for range max(1, report.Streams) {
		p, err := m.conn.DialPages(ctx, report.Token)
		if err != nil {
			closeAll(pages)
			return nil, err
		}
		pages = append(pages, p)
	}
	local, theirs, err := migrate.LoopbackPair()
	if err != nil {
		closeAll(pages)
		return nil, err
	}
	m.pages.Store(tunnel)
	ps := &pageStream{local: local, theirs: theirs, done: make(chan error, 1), close: func() {
		local.Close()
		theirs.Close() // CRIU's copy; closed already once CRIU has it
		closeAll(pages)
	}}
	go func() { ps.done <- tunnel.Join(tctx, local, pages, true) }()
	return ps, nil
}
