package api

import (
	"sync"
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
)

func (s *Server) Migrate(r *apiv1.MigrateRequest, stream apiv1.Ckptd_MigrateServer) error {
	var mu sync.Mutex // progress comes from the daemon's ticker goroutine
	send := func(ev *apiv1.MigrateEvent) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(ev)
	}
	res, err := s.d.Migrate(stream.Context(), daemon.MigrateRequest{
		Target: r.GetTarget(), To: r.GetTo(), Name: r.GetName(), KeepSource: r.GetKeepSource(), Lazy: r.GetLazy(),
		Options:        optionsFromAPI(r.GetOptions()),
		RestoreTimeout: time.Duration(r.GetRestoreTimeoutMs()) * time.Millisecond,
		PeerTimeout:    time.Duration(r.GetPeerTimeoutMs()) * time.Millisecond,
		Precopy:        precopyFromAPI(r.GetPrecopy()), PrecopyRounds: int(r.GetPrecopyRounds()),
		Progress: func(p daemon.MigrateProgress) {
			// A client that went away only misses progress; the migration
			// itself decides by its own errors.
			_ = send(&apiv1.MigrateEvent{Event: &apiv1.MigrateEvent_Progress{Progress: &apiv1.MigrateProgress{
				Phase: p.Phase, Bytes: p.Bytes, Total: p.Total}}})
		},
	})
	if err != nil {
		return toStatus(err)
	}
	out := &apiv1.MigrateResult{
		Destination: res.Destination, Name: res.Name, Pid: int32(res.PID), Checkpoint: res.Checkpoint,
		DowntimeNs: res.Downtime.Nanoseconds(), TotalNs: res.Total.Nanoseconds(), Bytes: res.Bytes,
		Stats: statsToAPI(res.Stats), SourceStopped: res.SourceStopped, Warnings: res.Warnings,
	}
	for _, p := range res.Phases {
		out.Phases = append(out.Phases, &apiv1.Phase{Name: p.Name, DurationNs: p.Duration.Nanoseconds()})
	}
	for _, r := range res.Rounds {
		out.Rounds = append(out.Rounds, &apiv1.Round{N: int32(r.N), Bytes: r.Bytes, TookNs: r.Took.Nanoseconds(), Frozen: r.Frozen})
	}
	return send(&apiv1.MigrateEvent{Event: &apiv1.MigrateEvent_Result{Result: out}})
}

func precopyFromAPI(p apiv1.Precopy) daemon.PrecopyMode {
	switch p {
	case apiv1.Precopy_PRECOPY_ON:
		return daemon.PrecopyOn
	case apiv1.Precopy_PRECOPY_OFF:
		return daemon.PrecopyOff
	}
	return daemon.PrecopyAuto
}
