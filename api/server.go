// Package api serves the daemon over gRPC. It is transport only: requests
// are converted, handed to daemon.Daemon, and errors mapped to codes.
package api

import (
	"context"
	"time"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/term"
)

// Server implements apiv1.CkptdServer on top of a Daemon.
type Server struct {
	apiv1.UnimplementedCkptdServer
	d *daemon.Daemon
}

func NewServer(d *daemon.Daemon) *Server { return &Server{d: d} }

func (s *Server) Version(ctx context.Context, _ *apiv1.VersionRequest) (*apiv1.VersionResponse, error) {
	v := s.d.Version(ctx)
	return &apiv1.VersionResponse{Daemon: v.Daemon, Go: v.Go, Criu: v.CRIU, CriuPath: v.CRIUPath, Kernel: v.Kernel,
		Goroutines: v.Goroutines, OpenFds: v.OpenFDs, RssBytes: v.RSSBytes}, nil
}

func (s *Server) Check(ctx context.Context, _ *apiv1.CheckRequest) (*apiv1.CheckResponse, error) {
	out := &apiv1.CheckResponse{}
	for _, c := range s.d.Check(ctx) {
		out.Checks = append(out.Checks, &apiv1.CheckResult{Name: c.Name, Ok: c.OK, Detail: c.Detail})
	}
	return out, nil
}

func (s *Server) Run(ctx context.Context, r *apiv1.RunRequest) (*apiv1.Target, error) {
	t, err := s.d.Run(ctx, daemon.RunRequest{Name: r.GetName(), Args: r.GetArgs(), Env: r.GetEnv(), Dir: r.GetDir(), User: r.GetUser(),
		TTY: r.GetTty(), Size: term.Size{Rows: uint16(r.GetRows()), Cols: uint16(r.GetCols())}, Net: r.GetNet(), Publish: r.GetPublish(),
		ScaleToZero: r.GetScaleToZero(), IdleAfter: time.Duration(r.GetIdleAfterNs()), Hooks: r.GetHooks(),
		LogMaxSize: r.GetLogMaxSize(), LogMaxFiles: int(r.GetLogMaxFiles()), Memory: r.GetMemory(), CPUs: r.GetCpus(),
		Restart: r.GetRestart(), RestartFromCheckpoint: r.GetRestartFromCheckpoint(), Persist: r.GetPersist()})
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}

func (s *Server) Persist(ctx context.Context, r *apiv1.PersistRequest) (*apiv1.Target, error) {
	t, err := s.d.Persist(ctx, r.GetTarget(), r.GetOn(), r.GetGroup())
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}

func (s *Server) Hibernate(ctx context.Context, r *apiv1.HibernateRequest) (*apiv1.Target, error) {
	t, err := s.d.Hibernate(ctx, r.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}

func (s *Server) Wake(ctx context.Context, r *apiv1.WakeRequest) (*apiv1.Target, error) {
	t, err := s.d.Wake(ctx, r.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}

func (s *Server) Ps(ctx context.Context, r *apiv1.PsRequest) (*apiv1.PsResponse, error) {
	var pruned []string
	if r.GetPrune() {
		var err error
		if pruned, err = s.d.Prune(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	ts, warnings, err := s.d.Ps(ctx, r.GetAll())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.PsResponse{Warnings: warnings, Pruned: pruned}
	for _, t := range ts {
		out.Targets = append(out.Targets, targetToAPI(t))
	}
	return out, nil
}

func (s *Server) Logs(r *apiv1.LogsRequest, stream apiv1.Ckptd_LogsServer) error {
	err := s.d.Logs(stream.Context(), daemon.LogsRequest{
		Name: r.GetName(), TailBytes: r.GetTailBytes(), TailLines: r.GetTailLines(), Tail: r.GetTail(), Follow: r.GetFollow(),
	}, func(b []byte) error { return stream.Send(&apiv1.LogsResponse{Data: b}) })
	return toStatus(err)
}

func (s *Server) Stop(ctx context.Context, r *apiv1.StopRequest) (*apiv1.StopResponse, error) {
	killed, err := s.d.Stop(ctx, r.GetTarget(), time.Duration(r.GetTimeoutNs()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.StopResponse{Killed: killed}, nil
}

func (s *Server) Kill(ctx context.Context, r *apiv1.KillRequest) (*apiv1.KillResponse, error) {
	return &apiv1.KillResponse{}, toStatus(s.d.Kill(ctx, r.GetTarget(), int(r.GetSignal())))
}

func (s *Server) Create(ctx context.Context, r *apiv1.CreateRequest) (*apiv1.Checkpoint, error) {
	c, err := s.d.Create(ctx, daemon.CreateRequest{Target: r.GetTarget(), Name: r.GetName(), Options: optionsFromAPI(r.GetOptions()),
		PrepareTimeout: time.Duration(r.GetPrepareTimeoutNs())})
	if err != nil {
		return nil, toStatus(err)
	}
	return checkpointToAPI(c), nil
}

func (s *Server) List(ctx context.Context, r *apiv1.ListRequest) (*apiv1.ListResponse, error) {
	cs, err := s.d.List(ctx, r.GetTarget())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.ListResponse{}
	for _, c := range cs {
		out.Checkpoints = append(out.Checkpoints, checkpointToAPI(c))
	}
	if r.GetTarget() == "" {
		gs, err := s.d.Groups(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		for _, g := range gs {
			out.Groups = append(out.Groups, groupToAPI(g))
		}
	}
	if r.GetQuarantined() {
		qs, err := s.d.Quarantined(ctx)
		if err != nil {
			return nil, toStatus(err)
		}
		for _, q := range qs {
			out.Quarantined = append(out.Quarantined, &apiv1.Quarantined{
				Id: q.ID, Reason: q.Reason, SinceUnixNano: q.Since.UnixNano(), Checkpoint: checkpointToAPI(q.Checkpoint),
			})
		}
	}
	return out, nil
}

func (s *Server) Verify(ctx context.Context, r *apiv1.VerifyRequest) (*apiv1.VerifyResponse, error) {
	res, err := s.d.Verify(ctx, r.GetCheckpoint(), r.GetReadmit())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.VerifyResponse{Checkpoint: checkpointToAPI(res.Checkpoint), Quarantined: res.Quarantined, Readmitted: res.Readmitted}
	if res.Problem != nil {
		out.Problem = res.Problem.Error()
	}
	return out, nil
}

func (s *Server) Remove(ctx context.Context, r *apiv1.RemoveRequest) (*apiv1.RemoveResponse, error) {
	ids, err := s.d.Remove(ctx, r.GetRefs(), daemon.RemoveOptions{Recursive: r.GetRecursive(), Relink: r.GetRelink()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.RemoveResponse{Removed: ids}, nil
}

func (s *Server) Restore(ctx context.Context, r *apiv1.RestoreRequest) (*apiv1.Target, error) {
	t, err := s.d.Restore(ctx, daemon.RestoreRequest{Checkpoint: r.GetCheckpoint(), Name: r.GetName(), Latest: r.GetLatest(), TCPClose: r.GetTcpClose(), Publish: r.GetPublish()})
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}

func (s *Server) Inspect(ctx context.Context, r *apiv1.InspectRequest) (*apiv1.InspectResponse, error) {
	if g, err := s.d.Group(ctx, r.GetCheckpoint()); err == nil {
		return &apiv1.InspectResponse{Group: groupToAPI(g)}, nil
	} else if !errdefs.IsNotFound(err) {
		return nil, toStatus(err)
	}
	in, err := s.d.Inspect(ctx, r.GetCheckpoint())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &apiv1.InspectResponse{Checkpoint: checkpointToAPI(in.Checkpoint), Children: in.Children, ChainProblem: in.ChainProblem}
	if inc := out.Checkpoint.GetIncremental(); inc != nil {
		inc.Depth = int32(in.ChainDepth)
	}
	for _, p := range in.Processes {
		out.Processes = append(out.Processes, processToAPI(p))
	}
	for _, n := range in.Needs {
		out.Needs = append(out.Needs, &apiv1.NeededFile{Path: n.Path, Size: n.Size, Dir: n.Dir, Problem: n.Problem})
	}
	return out, nil
}

func (s *Server) ResolveMigration(ctx context.Context, r *apiv1.ResolveMigrationRequest) (*apiv1.Target, error) {
	t, err := s.d.Resolve(ctx, r.GetTarget(), r.GetResume())
	if err != nil {
		return nil, toStatus(err)
	}
	return targetToAPI(t), nil
}
