package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/errdefs"
)

// Runtime is ckptd's view of one containerd daemon.
type Runtime struct {
	address string
	log     *slog.Logger
	client  *client.Client
	criu    criu.Binary // queue and watchdog for runc's CRIU work
}

// New makes a Runtime for the containerd at address. It does not connect
// yet: ckptd runs without containerd, and each call says when it is not
// reachable.
func New(log *slog.Logger, address string, bin criu.Binary) (*Runtime, error) {
	// containerd's own dialer waits up to its timeout for a missing socket
	// to appear; a plain dial fails at once, so every call answers quickly
	// when containerd is not there.
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", strings.TrimPrefix(addr, "unix://"))
	}
	c, err := client.New(address, client.WithDialOpts([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
	}))
	if err != nil {
		return nil, fmt.Errorf("containerd client for %s: %w", address, err)
	}
	return &Runtime{address: address, log: log, client: c, criu: bin}, nil
}

// Address is the containerd socket this Runtime talks to.
func (r *Runtime) Address() string { return r.address }

// Close drops the connection.
func (r *Runtime) Close() error { return r.client.Close() }

// Version returns containerd's version, or Unavailable.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(ctx)
	if err != nil {
		return "", r.wrap(err)
	}
	return v.Version, nil
}

// Info is a container as containerd sees it.
type Info struct {
	Ref     Ref
	Image   string
	Status  string // running, paused, stopped, created; "" without a task
	PID     int
	Created time.Time
}

// Running tells whether the container's task runs (or is paused).
func (i Info) Running() bool { return i.Status == "running" || i.Status == "paused" }

// List returns the containers of every namespace.
func (r *Runtime) List(ctx context.Context) ([]Info, error) {
	nss, err := r.client.NamespaceService().List(ctx)
	if err != nil {
		return nil, r.wrap(err)
	}
	var out []Info
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := r.client.Containers(nctx)
		if err != nil {
			return nil, r.wrap(err)
		}
		for _, c := range ctrs {
			info, err := r.info(nctx, Ref{Namespace: ns, ID: c.ID()}, c)
			if errdefs.IsNotFound(err) {
				continue // deleted while we listed
			}
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out, nil
}

// Get returns one container, or NotFound.
func (r *Runtime) Get(ctx context.Context, ref Ref) (Info, error) {
	ctx = namespaces.WithNamespace(ctx, ref.Namespace)
	c, err := r.client.LoadContainer(ctx, ref.ID)
	if err != nil {
		return Info{}, fmt.Errorf("container %s: %w", ref, r.wrap(err))
	}
	return r.info(ctx, ref, c)
}

func (r *Runtime) info(ctx context.Context, ref Ref, c client.Container) (Info, error) {
	ci, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return Info{}, r.wrap(err)
	}
	info := Info{Ref: ref, Image: ci.Image, Created: ci.CreatedAt}
	task, err := c.Task(ctx, nil)
	if cerrdefs.IsNotFound(err) {
		return info, nil
	}
	if err != nil {
		return Info{}, r.wrap(err)
	}
	st, err := task.Status(ctx)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return Info{}, r.wrap(err)
	}
	info.Status, info.PID = string(st.Status), int(task.Pid())
	return info, nil
}

// wrap turns containerd's error kinds into ckptd's, naming the socket when
// containerd cannot be reached.
func (r *Runtime) wrap(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		err = errgrpc.ToNative(err)
	}
	switch {
	case cerrdefs.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		cause := err.Error()
		if i := strings.LastIndex(cause, "connect: "); i >= 0 {
			cause = strings.Trim(cause[i:], `"`)
		}
		return fmt.Errorf("containerd at %s is not reachable (%s): %w", r.address, cause, errdefs.ErrUnavailable)
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	case cerrdefs.IsAlreadyExists(err):
		return fmt.Errorf("%v: %w", err, errdefs.ErrAlreadyExists)
	case cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	case cerrdefs.IsFailedPrecondition(err), cerrdefs.IsNotImplemented(err):
		return fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition)
	}
	return err
}
