package api

import (
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (s *Server) Events(_ *apiv1.EventsRequest, stream apiv1.Ckptd_EventsServer) error {
	sub, cancel, err := s.d.Subscribe(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	defer cancel()
	// The first message says the subscription is live: events from here
	// on reach this client.
	if err := stream.Send(&apiv1.Event{TimeUnixNano: time.Now().UnixNano(), Kind: "subscribed"}); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case e := <-sub.C:
			err := stream.Send(&apiv1.Event{
				TimeUnixNano: unixNano(e.Time), Kind: e.Kind, Op: e.Op, Target: e.Target, Checkpoint: e.Checkpoint,
				Name: e.Name, DurationNs: e.Duration.Nanoseconds(), FrozenNs: e.Frozen.Nanoseconds(), Bytes: e.Bytes,
				Error: e.Err, Dropped: int32(sub.Dropped()),
			})
			if err != nil {
				return err
			}
		}
	}
}
