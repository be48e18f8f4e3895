// Package config holds ckptd's configuration: built-in defaults, then a
// TOML file, then command-line flags, each overriding the one before.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/containerd/containerd/v2/pkg/identifiers"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/logfile"
	"github.com/ckptd/ckptd/schedule"
)

// DefaultPath is read when no --config is given and the file exists.
const DefaultPath = "/etc/ckptd/config.toml"

// Config is ckptd's configuration.
type Config struct {
	Root     string `toml:"root"`      // state root: checkpoints, index, logs
	Socket   string `toml:"socket"`    // API unix socket
	CRIUPath string `toml:"criu_path"` // empty: look criu up in PATH
	// TerminalHolder is the ckptd-term binary that holds terminal
	// sessions; empty: the one beside ckptd, or in PATH.
	TerminalHolder string `toml:"terminal_holder"`
	LogLevel       string `toml:"log_level"`  // debug, info, warn, error
	LogFormat      string `toml:"log_format"` // text or json
	// Containerd is the containerd socket for ctr: targets; ckptd runs
	// without it, and says so when a container is asked for.
	Containerd string `toml:"containerd_socket"`
	// ContainerdNamespace is the namespace of a ctr:ID target without one.
	ContainerdNamespace string `toml:"containerd_namespace"`
	// PeerListen is the TCP address (host:port) other ckptds migrate to;
	// empty serves no peers.
	PeerListen string `toml:"peer_listen"`
	// PeerCerts holds this host's certificate, key and the CA every peer
	// must be signed by (ckptctl certs writes them); migrations need it.
	PeerCerts string `toml:"peer_certs"`
	// PeerAllow, when set, names the only peers (certificate common name
	// or DNS name) accepted, in both directions; empty accepts any the CA
	// signed.
	PeerAllow []string `toml:"peer_allow"`
	// PeerTimeout ends a migration whose peer makes no progress (no byte
	// acknowledged, no message read) for that long ("30s", the default).
	PeerTimeout string `toml:"peer_timeout"`
	// PeerMaxIncoming caps the migrations this host receives at once (4).
	PeerMaxIncoming int `toml:"peer_max_incoming"`
	// PeerStreams caps the connections a page stream is striped over
	// (0: as many as cores, at most 4).
	PeerStreams int `toml:"peer_streams"`
	// SocketGroup is a group (name or id) given access to the API socket;
	// empty keeps it root's alone (0600).
	SocketGroup string `toml:"socket_group"`
	// CRIUTimeout bounds every CRIU and runc call ("10m"); empty scales
	// with the memory at stake (2 minutes plus 1 per GiB).
	CRIUTimeout string `toml:"criu_timeout"`
	// ShutdownGrace is how long a stopping ckptd waits for requests in
	// flight ("2m", the default). A migration whose destination may
	// already run the target is always waited for, to its restore timeout.
	ShutdownGrace string `toml:"shutdown_grace"`
	// CheckpointOnStop treats every stop as a shutdown: the persisted
	// targets are checkpointed and stopped. Without it only a stop during
	// the system's shutdown (systemd's "stopping" state) does so.
	CheckpointOnStop bool `toml:"checkpoint_on_stop"`
	// ShutdownCheckpoint bounds that work ("2m30s", the default): with
	// shutdown_grace it must fit the unit's TimeoutStopSec (5 min).
	ShutdownCheckpoint string `toml:"shutdown_checkpoint_timeout"`
	// CRIUConfig is a CRIU configuration file applied to every dump and
	// restore (CRIU's own option syntax), for options ckptd has no flag for.
	CRIUConfig string `toml:"criu_config"`
	// LinkRemap and GhostLimit are create's defaults for --link-remap and
	// --ghost-limit (bytes; 0 keeps CRIU's 1 MiB).
	LinkRemap  bool   `toml:"link_remap"`
	GhostLimit uint32 `toml:"ghost_limit"`
	// ScrubInterval, when set ("24h"), re-reads every checkpoint that
	// often and quarantines the damaged ones; ScrubRateMiB bounds its
	// reads (MiB/s, default 64).
	ScrubInterval string `toml:"scrub_interval"`
	ScrubRateMiB  int    `toml:"scrub_rate_mib"`
	// ChainDepth caps how many ancestors an incremental checkpoint reads
	// unchanged pages from (default 16); past it a checkpoint is stored
	// whole. 0 stores every checkpoint whole.
	ChainDepth int `toml:"chain_depth"`
	// MetricsListen, when set (host:port), serves Prometheus metrics at
	// /metrics there.
	MetricsListen string `toml:"metrics_listen"`
	// LogMaxSize and LogMaxFiles bound every workload's log (run's
	// --log-max-size and --log-max-files override them).
	LogMaxSize  string `toml:"log_max_size"`
	LogMaxFiles int    `toml:"log_max_files"`
	// Schedules are set at every start, as `ckptctl schedule` sets them.
	Schedules []Schedule `toml:"schedule"`
	// What a container checkpoint from outside (an import, a pull, a
	// migration) may ask for; each is refused by default, naming its key.
	TrustHostPaths      []string `toml:"trust_host_paths"`      // bind mounts of these host paths and below
	TrustHostNamespaces bool     `toml:"trust_host_namespaces"` // the host's network, PID, IPC or mount namespace
	TrustCapabilities   bool     `toml:"trust_capabilities"`    // capabilities beyond containerd's default set
	TrustDevices        bool     `toml:"trust_devices"`         // device nodes, or every device
	TrustUnconfined     bool     `toml:"trust_unconfined"`      // AppArmor unconfined, a seccomp profile allowing all
	// TrustRoot allows a process or workload checkpoint from outside whose
	// tree runs as root (CRIU restores the saved credentials).
	TrustRoot bool `toml:"trust_root"`
}

// MaxChainDepth bounds chain_depth: each level costs a restore a pagemap
// walk.
const MaxChainDepth = 32

// Schedule is one [[schedule]] table.
type Schedule struct {
	Target     string `toml:"target"` // a PID, workload name or ctr:NS/ID
	Every      string `toml:"every"`
	KeepLast   int    `toml:"keep_last"`
	KeepHourly int    `toml:"keep_hourly"`
	KeepDaily  int    `toml:"keep_daily"`
	MaxBytes   string `toml:"max_bytes"` // e.g. "20GiB"
}

// Parse checks the table and returns its interval and retention.
func (s Schedule) Parse() (time.Duration, schedule.Retention, error) {
	r := schedule.Retention{KeepLast: s.KeepLast, KeepHourly: s.KeepHourly, KeepDaily: s.KeepDaily}
	if s.Target == "" {
		return 0, r, fmt.Errorf("[[schedule]] without a target: %w", errdefs.ErrInvalidArgument)
	}
	every, err := time.ParseDuration(s.Every)
	if err != nil || every < schedule.MinEvery {
		return 0, r, fmt.Errorf("[[schedule]] of %s: every %q: want a duration of at least %v: %w", s.Target, s.Every, schedule.MinEvery, errdefs.ErrInvalidArgument)
	}
	if s.KeepLast < 0 || s.KeepHourly < 0 || s.KeepDaily < 0 {
		return 0, r, fmt.Errorf("[[schedule]] of %s: negative keep_*: %w", s.Target, errdefs.ErrInvalidArgument)
	}
	if s.MaxBytes != "" {
		if r.MaxBytes, err = schedule.ParseBytes(s.MaxBytes); err != nil {
			return 0, r, fmt.Errorf("[[schedule]] of %s: max_bytes: %w", s.Target, err)
		}
	}
	return every, r, nil
}

// Default is the embedded configuration `make run` uses.
func Default() Config {
	return Config{
		Root: "/var/lib/ckptd", Socket: "/run/ckptd/ckptd.sock", LogLevel: "info", LogFormat: "text",
		Containerd: "/run/containerd/containerd.sock", ContainerdNamespace: "default",
		PeerCerts: "/etc/ckptd/peer", ScrubRateMiB: 64, ChainDepth: 16, LogMaxSize: "64MiB", LogMaxFiles: logfile.DefaultMaxFiles,
	}
}

// Load reads path over the defaults. A missing file is an error only when
// required (the user named it).
func Load(path string, required bool) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return Default(), nil
		}
		return Default(), fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse reads a TOML configuration over the defaults; path names it in
// errors.
func Parse(data []byte, path string) (Config, error) {
	c := Default()
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return c, fmt.Errorf("parse config %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return c, fmt.Errorf("config %s: unknown key %q: %w", path, un[0].String(), errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// Validate checks the values that would otherwise fail late.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Root) || filepath.Clean(c.Root) == "/" {
		return fmt.Errorf("root %q must be an absolute path other than /: %w", c.Root, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(c.Socket) {
		return fmt.Errorf("socket %q must be an absolute path: %w", c.Socket, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(c.Containerd) {
		return fmt.Errorf("containerd_socket %q must be an absolute path: %w", c.Containerd, errdefs.ErrInvalidArgument)
	}
	if err := identifiers.Validate(c.ContainerdNamespace); err != nil {
		return fmt.Errorf("containerd_namespace %q: %v: %w", c.ContainerdNamespace, err, errdefs.ErrInvalidArgument)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen %q: want host:port: %w", c.MetricsListen, errdefs.ErrInvalidArgument)
		}
	}
	if c.PeerListen != "" {
		if _, _, err := net.SplitHostPort(c.PeerListen); err != nil {
			return fmt.Errorf("peer_listen %q: want host:port: %w", c.PeerListen, errdefs.ErrInvalidArgument)
		}
	}
	if !filepath.IsAbs(c.PeerCerts) {
		return fmt.Errorf("peer_certs %q must be an absolute path: %w", c.PeerCerts, errdefs.ErrInvalidArgument)
	}
	for _, p := range c.TrustHostPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
			return fmt.Errorf("trust_host_paths: %q must be an absolute path other than /: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := c.Level(); err != nil {
		return err
	}
	if _, err := c.Timeout(); err != nil {
		return err
	}
	if _, err := c.Grace(); err != nil {
		return err
	}
	if _, err := c.ShutdownCheckpointTimeout(); err != nil {
		return err
	}
	if _, err := c.PeerIdle(); err != nil {
		return err
	}
	if c.PeerStreams < 0 || c.PeerStreams > 8 {
		return fmt.Errorf("peer_streams %d: want 0 (as many as cores, at most 4) to 8: %w", c.PeerStreams, errdefs.ErrInvalidArgument)
	}
	if c.PeerMaxIncoming < 0 {
		return fmt.Errorf("peer_max_incoming %d: want 0 (the default, 4) or more: %w", c.PeerMaxIncoming, errdefs.ErrInvalidArgument)
	}
	if _, err := c.Scrub(); err != nil {
		return err
	}
	for _, sc := range c.Schedules {
		if _, _, err := sc.Parse(); err != nil {
			return err
		}
	}
	if c.ChainDepth < 0 || c.ChainDepth > MaxChainDepth {
		return fmt.Errorf("chain_depth %d: want 0 (store every checkpoint whole) to %d: %w", c.ChainDepth, MaxChainDepth, errdefs.ErrInvalidArgument)
	}
	if _, err := c.LogPolicy(); err != nil {
		return err
	}
	if c.ScrubRateMiB <= 0 {
		return fmt.Errorf("scrub_rate_mib %d: want a positive number of MiB per second: %w", c.ScrubRateMiB, errdefs.ErrInvalidArgument)
	}
	if c.CRIUConfig != "" && !filepath.IsAbs(c.CRIUConfig) {
		return fmt.Errorf("criu_config %q must be an absolute path: %w", c.CRIUConfig, errdefs.ErrInvalidArgument)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log_format %q: want text or json: %w", c.LogFormat, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Level parses LogLevel.
func (c Config) Level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(c.LogLevel))); err != nil {
		return l, fmt.Errorf("log_level %q: want debug, info, warn or error: %w", c.LogLevel, errdefs.ErrInvalidArgument)
	}
	return l, nil
}

// PeerIdle parses PeerTimeout (default 30 seconds).
func (c Config) PeerIdle() (time.Duration, error) {
	if c.PeerTimeout == "" {
		return 30 * time.Second, nil
	}
	d, err := time.ParseDuration(c.PeerTimeout)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("peer_timeout %q: want a duration of 1s or more, such as 30s: %w", c.PeerTimeout, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// Grace parses ShutdownGrace (default 2 minutes).
func (c Config) Grace() (time.Duration, error) {
	if c.ShutdownGrace == "" {
		return 2 * time.Minute, nil
	}
	d, err := time.ParseDuration(c.ShutdownGrace)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("shutdown_grace %q: want a duration such as 2m: %w", c.ShutdownGrace, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// ShutdownCheckpointTimeout parses ShutdownCheckpoint (default 2m30s).
func (c Config) ShutdownCheckpointTimeout() (time.Duration, error) {
	if c.ShutdownCheckpoint == "" {
		return 150 * time.Second, nil
	}
	d, err := time.ParseDuration(c.ShutdownCheckpoint)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("shutdown_checkpoint_timeout %q: want a duration such as 2m30s: %w", c.ShutdownCheckpoint, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// Timeout parses CRIUTimeout; zero means "scale with memory".
func (c Config) Timeout() (time.Duration, error) {
	if c.CRIUTimeout == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.CRIUTimeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("criu_timeout %q: want a positive duration such as 10m: %w", c.CRIUTimeout, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// Scrub parses ScrubInterval; zero means no scrub.
func (c Config) Scrub() (time.Duration, error) {
	if c.ScrubInterval == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.ScrubInterval)
	if err != nil || d < 0 || (d > 0 && d < time.Second) {
		return 0, fmt.Errorf("scrub_interval %q: want a duration of at least 1s, such as 24h, or 0 for none: %w", c.ScrubInterval, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// LogPolicy is how workloads' logs are bounded.
func (c Config) LogPolicy() (logfile.Policy, error) {
	size, err := schedule.ParseBytes(c.LogMaxSize)
	if err != nil {
		return logfile.Policy{}, fmt.Errorf("log_max_size: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	p := logfile.Policy{MaxSize: size, MaxFiles: c.LogMaxFiles}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return p, nil
}
