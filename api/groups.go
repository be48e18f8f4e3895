package api

import (
	"context"
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/store"
)

func (s *Server) CreateGroup(ctx context.Context, r *apiv1.CreateGroupRequest) (*apiv1.Group, error) {
	g, err := s.d.CreateGroup(ctx, daemon.GroupRequest{Name: r.GetName(), Targets: r.GetTargets(),
		Options: optionsFromAPI(r.GetOptions()), PrepareTimeout: time.Duration(r.GetPrepareTimeoutNs())})
	if err != nil {
		return nil, toStatus(err)
	}
	return groupToAPI(g), nil
}

func (s *Server) RestoreGroup(ctx context.Context, r *apiv1.RestoreGroupRequest) (*apiv1.RestoreGroupResponse, error) {
	ts, err := s.d.RestoreGroup(ctx, r.GetGroup(), r.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.RestoreGroupResponse{}
	for _, t := range ts {
		out.Targets = append(out.Targets, targetToAPI(t))
	}
	return out, nil
}

func groupToAPI(g *store.Group) *apiv1.Group {
	out := &apiv1.Group{Id: g.ID, Name: g.Name, CreatedUnixNano: unixNano(g.Created), Scheduled: g.Scheduled, FrozenNs: g.Frozen.Nanoseconds()}
	for _, m := range g.Members {
		out.Members = append(out.Members, &apiv1.GroupMember{Checkpoint: m.Checkpoint, CheckpointName: m.Name, Target: refToAPI(m.Target), Host: m.Host})
	}
	return out
}
