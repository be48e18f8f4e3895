package api

import (
	"context"
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/schedule"
)

func (s *Server) SetSchedule(ctx context.Context, r *apiv1.SetScheduleRequest) (*apiv1.Schedule, error) {
	st, err := s.d.SetSchedule(ctx, daemon.ScheduleRequest{
		Target: r.GetTarget(), Group: r.GetGroup(), Every: time.Duration(r.GetEveryNs()),
		Retention: schedule.Retention{KeepLast: int(r.GetKeepLast()), KeepHourly: int(r.GetKeepHourly()),
			KeepDaily: int(r.GetKeepDaily()), MaxBytes: r.GetMaxBytes()},
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return scheduleToAPI(&st), nil
}

func (s *Server) ListSchedules(ctx context.Context, _ *apiv1.ListSchedulesRequest) (*apiv1.ListSchedulesResponse, error) {
	out := &apiv1.ListSchedulesResponse{}
	for _, st := range s.d.Schedules(ctx) {
		out.Schedules = append(out.Schedules, scheduleToAPI(&st))
	}
	return out, nil
}

func (s *Server) RemoveSchedule(ctx context.Context, r *apiv1.RemoveScheduleRequest) (*apiv1.RemoveScheduleResponse, error) {
	if err := s.d.RemoveSchedule(ctx, r.GetTarget()); err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.RemoveScheduleResponse{}, nil
}

func scheduleToAPI(st *schedule.Status) *apiv1.Schedule {
	if st == nil {
		return nil
	}
	return &apiv1.Schedule{
		Target: st.Target, Key: st.Key, EveryNs: st.Every.Nanoseconds(),
		KeepLast: int32(st.KeepLast), KeepHourly: int32(st.KeepHourly), KeepDaily: int32(st.KeepDaily), MaxBytes: st.MaxBytes,
		FromConfig: st.FromConfig, LastRunUnixNano: unixNano(st.LastRun), LastCheckpoint: st.LastCheckpoint,
		Runs: int32(st.Runs), Skipped: int32(st.Skipped), Failures: int32(st.Failures), LastError: st.LastError, Running: st.Running,
		Members: st.Members,
	}
}
