package api

import (
	"errors"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/term"
)

// Attach relays a client to a workload's terminal session until either
// side ends: the client detaching, or the session.
func (s *Server) Attach(stream apiv1.Ckptd_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	conn, err := s.d.Attach(stream.Context(), first.GetName())
	if err != nil {
		return toStatus(err)
	}
	defer conn.Close() // also ends the goroutine still relaying
	if err := relayInput(conn, first); err != nil {
		return toStatus(err)
	}
	// Attached: the client may put its terminal in raw mode now.
	if err := stream.Send(&apiv1.AttachOutput{}); err != nil {
		return err
	}
	done := make(chan error, 2)
	go func() {
		for {
			p, err := conn.Output()
			if errors.Is(err, term.ErrDropped) {
				done <- err
				return
			}
			if err != nil {
				done <- nil // the session ended
				return
			}
			if err := stream.Send(&apiv1.AttachOutput{Data: p}); err != nil {
				done <- err
				return
			}
		}
	}()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				done <- nil // the client detached or went away
				return
			}
			if err := relayInput(conn, m); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		return toStatus(err)
	case <-stream.Context().Done(): // ckptd is stopping
		return stream.Context().Err()
	}
}

func relayInput(conn *term.Conn, m *apiv1.AttachInput) error {
	if m.GetRows() > 0 && m.GetCols() > 0 {
		if err := conn.Resize(term.Size{Rows: uint16(m.GetRows()), Cols: uint16(m.GetCols())}); err != nil {
			return err
		}
	}
	if len(m.GetData()) > 0 {
		return conn.Input(m.GetData())
	}
	return nil
}
