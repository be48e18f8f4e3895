// Command ckptd is the checkpoint/restore daemon. This file is flags and
// wiring only; the work happens in daemon/ and the packages it drives.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/ckptd/ckptd/api"
	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/config"
	"github.com/ckptd/ckptd/container"
	"github.com/ckptd/ckptd/criu"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/dumper"
	"github.com/ckptd/ckptd/events"
	"github.com/ckptd/ckptd/freezer"
	"github.com/ckptd/ckptd/ingest"
	"github.com/ckptd/ckptd/limits"
	"github.com/ckptd/ckptd/metrics"
	"github.com/ckptd/ckptd/migrate"
	"github.com/ckptd/ckptd/network"
	"github.com/ckptd/ckptd/peer"
	"github.com/ckptd/ckptd/proc"
	"github.com/ckptd/ckptd/restorer"
	"github.com/ckptd/ckptd/sdnotify"
	"github.com/ckptd/ckptd/store"
	"github.com/ckptd/ckptd/term"
	"github.com/ckptd/ckptd/workload"
)

func main() {
	if workload.IsGate(os.Args) {
		workload.Gate(os.Args) // a workload ckptd launches, until recorded
	}
	err := run()
	switch {
	case errors.Is(err, flag.ErrHelp): // the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "ckptd:", err)
		os.Exit(1)
	}
}

// errVersion is --version: the version was printed.
var errVersion = errors.New("version printed")

func run() error {
	// Before anything is started that could inherit it.
	manager := sdnotify.FromEnv()
	cfg, err := loadConfig(os.Args[1:])
	if errors.Is(err, errVersion) {
		fmt.Println("ckptd", daemon.Version)
		return nil
	}
	if err != nil {
		return err
	}
	level, _ := cfg.Level()
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root (CRIU needs it)")
	}
	if err := proc.CloseExecFrom(3); err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// A CRIU a killed ckptd left running may still hold a target frozen
	// or write into staging: end it before the store cleans up.
	helpers, err := criu.NewHelpers(store.Layout{Root: cfg.Root}.HelpersDir(), log)
	if err != nil {
		return err
	}
	helpers.EndLeftovers()
	bin, err := criu.Locate(ctx, cfg.CRIUPath, helpers)
	if err != nil {
		return err
	}
	bin.Timeout, _ = cfg.Timeout() // validated
	bin.ConfigFile = cfg.CRIUConfig
	timeout := "2m plus 1m per GiB of the target's memory"
	if bin.Timeout > 0 {
		timeout = bin.Timeout.String()
	}
	log.Info("criu found", "path", bin.Path, "version", bin.VersionString(), "timeout", timeout)
	sup, err := workload.NewSupervisor(log, helpers.Busy, "/proc/self/exe")
	if err != nil {
		return err
	}
	go sup.ReapOrphans(ctx)
	st, err := store.Open(ctx, cfg.Root, log)
	if err != nil {
		return err
	}
	defer st.Close()
	hub := events.NewHub()
	if err := observe(ctx, cfg, st, hub, log); err != nil {
		return err
	}
	ctrs, err := container.New(log, cfg.Containerd, bin)
	if err != nil {
		return err
	}
	defer ctrs.Close()
	peerTLS, err := peerConfig(cfg)
	if err != nil {
		return err
	}
	peerIdle, _ := cfg.PeerIdle() // validated
	nets, netsErr := network.NewManager(network.Config{StateDir: st.Layout().NetworkDir()}, st.Layout().NetNSDir())
	var networks daemon.Networks
	if netsErr == nil {
		networks = nets
	}
	logs, _ := cfg.LogPolicy() // validated
	frz, frzErr := freezer.Open(freezer.NameFor(cfg.Root))
	lim, limErr := limits.Open(freezer.NameFor(cfg.Root))
	var limiter daemon.Limiter
	if limErr == nil {
		limiter = lim
	}
	var groups daemon.Freezer
	if frzErr == nil {
		groups = frz
	}
	d, err := daemon.New(ctx, daemon.Parts{
		Log: log, Store: st, Dumper: dumper.New(bin, log), Restorer: restorer.New(bin, log),
		Supervisor: sup, CRIU: bin, Containers: ctrs,
		ContainerNamespace: cfg.ContainerdNamespace, ContainerdAddress: cfg.Containerd,
		Peer: peerTLS, PeerInfo: peer.Describe(cfg.PeerCerts, cfg.PeerAllow), PeerTimeout: peerIdle, PeerStreams: cfg.PeerStreams, Defaults: store.Options{LinkRemap: cfg.LinkRemap, GhostLimit: cfg.GhostLimit}, ChainDepth: cfg.ChainDepth, Logs: logs,
		Events: hub, Terminals: term.NewSessions(termHolder(cfg.TerminalHolder), st.Layout().TerminalSocket, sup.Spawn),
		Networks: networks, NetworksErr: netsErr, Freezer: groups, FreezerErr: frzErr, Limits: limiter, LimitsErr: limErr,
		Trust: ingest.Policy{HostPaths: cfg.TrustHostPaths, HostNamespaces: cfg.TrustHostNamespaces,
			Capabilities: cfg.TrustCapabilities, Devices: cfg.TrustDevices, Unconfined: cfg.TrustUnconfined, Root: cfg.TrustRoot},
	})
	if err != nil {
		return err
	}
	defer d.Close()
	setSchedules(ctx, d, cfg.Schedules, log)
	peers := make(chan error, 1)
	if cfg.PeerListen != "" {
		ps, err := migrate.Listen(cfg.PeerListen, peerTLS, d, log, migrate.ServerOptions{Idle: peerIdle, MaxIncoming: cfg.PeerMaxIncoming})
		if err != nil {
			return err
		}
		log.Info("serving peers", "address", ps.Addr().String())
		go func() { peers <- ps.Serve(ctx) }()
	}

	lis, err := api.Listen(cfg.Socket, cfg.SocketGroup)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)
	stopping := make(chan struct{})
	srv := grpc.NewServer(api.ServerOptions(log, stopping)...)
	apiv1.RegisterCkptdServer(srv, api.NewServer(d))
	log.Info("ckptd serving", "socket", cfg.Socket, "root", cfg.Root, "version", daemon.Version)
	if err := manager.Notify("serving "+cfg.Socket, sdnotify.Ready); err != nil {
		log.Warn("tell the service manager ckptd is ready", "err", err)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case err := <-peers:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: waiting for operations in flight")
	if err := manager.Notify("stopping: waiting for operations in flight", sdnotify.Stopping); err != nil {
		log.Warn("tell the service manager ckptd is stopping", "err", err)
	}
	close(stopping) // events, logs -f and attach end now, saying why
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	grace, _ := cfg.Grace() // validated
	waitInFlight(stopped, time.Now().Add(grace), d, log)
	srv.Stop()
	if cfg.PeerListen != "" {
		waitInFlight(peers, time.Now().Add(grace), d, log)
	}
	checkpointForShutdown(cfg, manager, d, log)
	return nil
}

func loadConfig(args []string) (config.Config, error) {
	fs := flag.NewFlagSet("ckptd", flag.ContinueOnError)
	path := fs.String("config", "", "TOML config file (default "+config.DefaultPath+" if present)")
	root := fs.String("root", "", "state root")
	socket := fs.String("socket", "", "API unix socket")
	criuPath := fs.String("criu", "", "CRIU binary (default: criu in PATH)")
	holder := fs.String("terminal-holder", "", "ckptd-term binary that holds terminal sessions (default: beside ckptd, or in PATH)")
	level := fs.String("log-level", "", "debug, info, warn or error")
	format := fs.String("log-format", "", "text or json")
	ctrd := fs.String("containerd", "", "containerd socket for ctr: targets (default "+config.Default().Containerd+")")
	ns := fs.String("containerd-namespace", "", "namespace of ctr:ID targets (default "+config.Default().ContainerdNamespace+")")
	peerListen := fs.String("peer-listen", "", "TCP address (host:port) to accept migrations from other ckptds on")
	peerCerts := fs.String("peer-certs", "", "directory with this host's peer certificate, key and CA (default "+config.Default().PeerCerts+")")
	criuTimeout := fs.String("criu-timeout", "", "deadline of every CRIU and runc call, e.g. 10m (default: 2m plus 1m per GiB of memory)")
	criuConfig := fs.String("criu-config", "", "CRIU configuration file applied to every dump and restore")
	peerAllow := fs.String("peer-allow", "", "comma-separated peer names accepted (default: any the CA signed)")
	peerTimeout := fs.String("peer-timeout", "", "end a migration whose peer makes no progress for this long (default 30s)")
	peerMax := fs.Int("peer-max-incoming", 0, "migrations received at once (default 4)")
	peerStreams := fs.Int("peer-streams", 0, "connections a migration's page stream is striped over, 1-8 (default: as many as cores, at most 4)")
	socketGroup := fs.String("socket-group", "", "group (name or id) given access to the API socket (default: root only)")
	grace := fs.String("shutdown-grace", "", "how long stopping waits for requests in flight (default 2m; committed migrations are always waited for)")
	onStop := fs.Bool("checkpoint-on-stop", false, "treat every stop as a shutdown: checkpoint and stop the persisted targets, which the next start restores (config checkpoint_on_stop)")
	scrub := fs.String("scrub-interval", "", "re-read every checkpoint this often and quarantine damaged ones, e.g. 24h (default: never)")
	metricsListen := fs.String("metrics-listen", "", "host:port to serve Prometheus metrics on at /metrics (default: none)")
	chainDepth := fs.String("chain-depth", "", "ancestors an incremental checkpoint may read pages from; 0 stores every checkpoint whole (default 16)")
	version := fs.Bool("version", false, "print ckptd's version and exit")
	trustRoot := fs.Bool("trust-root", false, "allow process and workload checkpoints from outside (imports, pulls, migrations) that run as root (config trust_root)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if *version {
		return config.Config{}, errVersion
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfgPath, required := *path, *path != ""
	if !required {
		cfgPath = config.DefaultPath
	}
	cfg, err := config.Load(cfgPath, required)
	if err != nil {
		return cfg, err
	}
	for dst, v := range map[*string]string{&cfg.Root: *root, &cfg.Socket: *socket, &cfg.CRIUPath: *criuPath, &cfg.TerminalHolder: *holder, &cfg.LogLevel: *level, &cfg.LogFormat: *format,
		&cfg.Containerd: *ctrd, &cfg.ContainerdNamespace: *ns, &cfg.PeerListen: *peerListen, &cfg.PeerCerts: *peerCerts,
		&cfg.CRIUTimeout: *criuTimeout, &cfg.CRIUConfig: *criuConfig, &cfg.ShutdownGrace: *grace, &cfg.SocketGroup: *socketGroup, &cfg.ScrubInterval: *scrub, &cfg.MetricsListen: *metricsListen, &cfg.PeerTimeout: *peerTimeout} {
		if v != "" {
			*dst = v
		}
	}
	if *trustRoot {
		cfg.TrustRoot = true
	}
	if *onStop {
		cfg.CheckpointOnStop = true
	}
	if *peerMax != 0 {
		cfg.PeerMaxIncoming = *peerMax
	}
	if *peerStreams != 0 {
		cfg.PeerStreams = *peerStreams
	}
	if *peerAllow != "" {
		cfg.PeerAllow = strings.Split(*peerAllow, ",")
	}
	if *chainDepth != "" {
		n, err := strconv.Atoi(*chainDepth)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("--chain-depth %q: want a number, 0 or more", *chainDepth)
		}
		cfg.ChainDepth = n
	}
	return cfg, cfg.Validate()
}

// peerConfig loads the peer credentials. Without them ckptd runs, but
// cannot migrate; serving peers requires them.
func peerConfig(cfg config.Config) (*tls.Config, error) {
	if _, err := os.Stat(cfg.PeerCerts); errors.Is(err, os.ErrNotExist) && cfg.PeerListen == "" {
		return nil, nil
	}
	c, err := peer.Config(cfg.PeerCerts)
	if err != nil {
		return nil, err
	}
	peer.Restrict(c, cfg.PeerAllow)
	return c, nil
}

// observe starts the scrub and the metrics server the config asks for,
// both reporting through hub.
func observe(ctx context.Context, cfg config.Config, st *store.Store, hub *events.Hub, log *slog.Logger) error {
	if every, _ := cfg.Scrub(); every > 0 { // validated
		st.ScrubEvery(every, int64(cfg.ScrubRateMiB)<<20, func(r store.ScrubResult) {
			hub.Publish(events.Event{Kind: events.ScrubPassEnded, Bytes: r.Bytes})
			for _, id := range r.Quarantined {
				hub.Publish(events.Event{Kind: events.Quarantined, Checkpoint: id})
			}
		})
	}
	if cfg.MetricsListen == "" {
		return nil
	}
	ln, err := metrics.Listen(cfg.MetricsListen)
	if err != nil {
		return err
	}
	m := metrics.New(st)
	go m.Run(ctx, hub)
	go func() {
		if err := m.Serve(ctx, ln, log); err != nil {
			log.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// setSchedules sets the config file's schedules; one whose target is not
// there is logged, not fatal.
func setSchedules(ctx context.Context, d *daemon.Daemon, scheds []config.Schedule, log *slog.Logger) {
	for _, sc := range scheds {
		every, r, _ := sc.Parse() // validated
		if _, err := d.SetSchedule(ctx, daemon.ScheduleRequest{Target: sc.Target, Every: every, Retention: r, FromConfig: true}); err != nil {
			log.Error("schedule from the config file not set", "target", sc.Target, "err", err)
		}
	}
}

// termHolder is the configured terminal holder, or the one beside this
// executable (installed together), or ckptd-term in PATH.
func termHolder(configured string) string {
	if configured != "" {
		return configured
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "ckptd-term")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("ckptd-term"); err == nil {
		return p
	}
	return "ckptd-term"
}
