package store

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ckptd/ckptd/errdefs"
	"github.com/ckptd/ckptd/limits"
	"github.com/ckptd/ckptd/logfile"
	"github.com/ckptd/ckptd/network"
)

// FormatVersion is the version of checkpoint.json and of the directory
// layout it describes. Readers refuse versions they do not know. Version 2
// records BLAKE3 digests (see digest.go) where version 1 recorded SHA-256;
// both are read.
const FormatVersion = 2

// Target kinds.
const (
	KindProcess   = "process"   // any host process tree, by PID
	KindWorkload  = "workload"  // a tree ckptd launched in its own PID namespace
	KindContainer = "container" // a containerd container; Name is NAMESPACE/ID
)

// TargetRef names what a checkpoint was taken of.
type TargetRef struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name,omitempty"`
	PID     int      `json:"pid"`
	Command []string `json:"command,omitempty"`
	// LogPath is where a workload's stdout and stderr went; a restore hands
	// it a fresh log in its place.
	LogPath string `json:"log_path,omitempty"`
	// Terminal is set when the tree's terminal is a session ckptd holds.
	Terminal *Terminal `json:"terminal,omitempty"`
	// Owner is the uid whose target this is, and whose its checkpoints
	// are (package access): root's (0) unless a socket_group caller ran
	// or checkpointed it, or root ran it with run --user.
	Owner uint32 `json:"owner,omitempty"`
	// Notify is the abstract socket a workload may listen on to be told
	// of its checkpoints (package notify); it is in its environment.
	Notify string `json:"notify,omitempty"`
	// Hooks are commands run in the workload's namespaces at prepare,
	// sealed and restored (run --hook); never taken from outside.
	Hooks map[string]string `json:"hooks,omitempty"`
	// Log bounds its log (run --log-max-size, --log-max-files); nil:
	// the daemon's log_max_size and log_max_files.
	Log *logfile.Policy `json:"log,omitempty"`
	// Limits bound its memory and CPU (run --memory, --cpus), in cgroups
	// ckptd makes for it; every restore of it gets them again.
	Limits *limits.Limits `json:"limits,omitempty"`
	// Restart is what happens when it ends on its own (run --restart).
	Restart *RestartPolicy `json:"restart,omitempty"`
}

// RestartPolicy restarts a workload that ends on its own: not one a
// user, a checkpoint or a migration ended.
type RestartPolicy struct {
	Always bool `json:"always,omitempty"` // else only after a failure (non-zero exit, a signal)
	Max    int  `json:"max,omitempty"`    // at most this many restarts (0: no bound)
	// FromCheckpoint restores its newest sealed checkpoint instead of
	// starting its command again, once it has one.
	FromCheckpoint bool `json:"from_checkpoint,omitempty"`
}

// Terminal is a tree's terminal session: a pseudo-terminal whose master
// side a holder process keeps (package term).
type Terminal struct {
	// Key is CRIU's name of the slave side, external to the tree's
	// checkpoint ("tty[rdev:dev]"); a restore hands a new one in its place.
	Key string `json:"key"`
	// Rows and Cols are the window size at the checkpoint.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// Key identifies a target across checkpoints: successive checkpoints of one
// key form a chain.
func (t TargetRef) Key() string {
	switch t.Kind {
	case KindWorkload:
		return "workload/" + t.Name
	case KindContainer:
		return "container/" + t.Name
	}
	return fmt.Sprintf("pid/%d", t.PID)
}

// String is the target as a user names it: NAME, ctr:NAMESPACE/ID or
// pid:N.
func (t TargetRef) String() string {
	switch t.Kind {
	case KindWorkload:
		return t.Name
	case KindContainer:
		return "ctr:" + t.Name
	}
	return fmt.Sprintf("pid:%d", t.PID)
}

// Options records how a checkpoint was taken.
type Options struct {
	LeaveRunning   bool `json:"leave_running"`
	TCPEstablished bool `json:"tcp_established"`
	FileLocks      bool `json:"file_locks"`
	ExtUnixSk      bool `json:"ext_unix_sk"`
	ShellJob       bool `json:"shell_job"`
	LinkRemap      bool `json:"link_remap,omitempty"`
	// GhostLimit is the largest deleted open file CRIU keeps (bytes; 0:
	// CRIU's 1 MiB).
	GhostLimit uint32 `json:"ghost_limit,omitempty"`
	// CRIUConfig is a CRIU configuration file used by the dump and its
	// restores; empty uses the daemon's.
	CRIUConfig string `json:"criu_config,omitempty"`
}

// DumpStats are CRIU's dump statistics, under CRIU's own names (microseconds).
type DumpStats struct {
	FreezingTime       uint32 `json:"freezing_time"`
	FrozenTime         uint32 `json:"frozen_time"`
	MemdumpTime        uint32 `json:"memdump_time"`
	MemwriteTime       uint32 `json:"memwrite_time"`
	PagesScanned       uint64 `json:"pages_scanned"`
	PagesWritten       uint64 `json:"pages_written"`
	PagesSkippedParent uint64 `json:"pages_skipped_parent"`
	// CommitSync is ckptd's, not CRIU's: the microseconds the frozen
	// target waited for its images to reach the disk (0 when it was
	// released first, --leave-running).
	CommitSync uint32 `json:"commit_sync,omitempty"`
}

// ContainerInfo is what a container checkpoint needs beyond CRIU's images
// to recreate the container: its base image, where its root filesystem
// came from, and how containerd ran it. The OCI spec and the writable
// layer are files of the checkpoint (ContainerSpecFile, RootfsDiffFile).
type ContainerInfo struct {
	Namespace   string `json:"namespace"`
	ID          string `json:"id"`
	Image       string `json:"image"`
	ImageDigest string `json:"image_digest"`
	// ImageID is the image's config digest, which other engines name it
	// by (a checkpoint imported from Podman has it, not ImageDigest).
	ImageID string `json:"image_id,omitempty"`
	// Engine is the engine that checkpointed the container when it was
	// not ckptd ("libpod" for Podman, "cri-o"): an imported checkpoint.
	Engine      string            `json:"engine,omitempty"`
	Snapshotter string            `json:"snapshotter"`
	Runtime     string            `json:"runtime"`
	Labels      map[string]string `json:"labels,omitempty"`
	// RootfsMediaType is the media type of RootfsDiffFile; empty when the
	// container had no writable layer to save.
	RootfsMediaType string `json:"rootfs_media_type,omitempty"`
}

// Migration records where a checkpoint received from a peer ckptd came
// from; Host and Target say what it was taken of there.
type Migration struct {
	Peer     string    `json:"peer"`     // the source ckptd: certificate name (address)
	Received time.Time `json:"received"` // when the destination ran it
}

// User is a user and group id.
type User struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
	// Several says some task runs as another uid than the root task's.
	Several bool `json:"several,omitempty"`
}

func (u *User) String() string {
	if u == nil {
		return "an unknown user"
	}
	s := fmt.Sprintf("uid %d, gid %d", u.UID, u.GID)
	if u.Several {
		s += ", and other users"
	}
	return s
}

// Arrived is when this ckptd took the checkpoint, or received it (an
// import or pull, a migration): "latest" orders by it, since a copy
// carries the time its source took it.
func (c *Checkpoint) Arrived() time.Time {
	switch {
	case c.Imported != nil && !c.Imported.Time.IsZero():
		return c.Imported.Time
	case c.Migration != nil && !c.Migration.Received.IsZero():
		return c.Migration.Received
	}
	return c.Created
}

// FileSum is the size and digest of one file of a checkpoint: SHA256 in
// format 1, BLAKE3 (see digest.go) from format 2.
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	BLAKE3 string `json:"blake3,omitempty"`
}

// Checkpoint is the record kept in checkpoint.json and in the index.
type Checkpoint struct {
	FormatVersion int                `json:"format_version"`
	ID            string             `json:"id"`
	Name          string             `json:"name"`
	Target        TargetRef          `json:"target"`
	Parent        string             `json:"parent,omitempty"`
	Created       time.Time          `json:"created"`
	CRIUVersion   string             `json:"criu_version"`
	Kernel        string             `json:"kernel"`
	Host          string             `json:"host"`
	CPUModel      string             `json:"cpu_model"`
	Options       Options            `json:"options"`
	Stats         *DumpStats         `json:"stats,omitempty"`
	Container     *ContainerInfo     `json:"container,omitempty"`
	Migration     *Migration         `json:"migration,omitempty"`
	Files         map[string]FileSum `json:"files"`
	// State is StateSealing from the commit until every file is hashed and
	// on disk; records written before states existed are sealed.
	State string `json:"state,omitempty"`
	// BootID is the kernel's boot id at the commit: a checkpoint still
	// sealing after a reboot may have lost pages that never reached disk.
	BootID string `json:"boot_id,omitempty"`
	// Synced says its files were fsynced before its target was released:
	// a checkpoint still sealing after a reboot is sealed, not quarantined.
	Synced bool      `json:"synced,omitempty"`
	Sealed time.Time `json:"sealed,omitempty"` // when it became sealed
	// Scheduled is set on checkpoints a schedule took: only those does its
	// retention policy remove.
	Scheduled bool    `json:"scheduled,omitempty"`
	Imported  *Import `json:"imported,omitempty"`
	// Dropped says what of a checkpoint from outside (an import, a pull,
	// a migration) stayed out at the boundary (package ingest): a restore
	// repeats it.
	Dropped []string `json:"dropped,omitempty"`
	// RunsAs is who the tree of a process or workload checkpoint from
	// outside runs as once restored, read from its images here.
	RunsAs *User `json:"runs_as,omitempty"`
	// Incremental is set when the images take their unchanged pages from
	// the parent's (package chain): the parent and its own chain must stay.
	Incremental *Incremental `json:"incremental,omitempty"`
	// Network is the workload's own network namespace at the checkpoint
	// (nil: the host's). The namespace was external to the dump: a restore
	// makes a new one from this and hands it to CRIU.
	Network *network.Spec `json:"network,omitempty"`
	// AppState is what the workload answered prepare with (package
	// notify): a restore hands it back.
	AppState []byte `json:"app_state,omitempty"`
	// Group is the group checkpoint this is a member of (see Group): it
	// counts only once the group's record exists.
	Group string `json:"group,omitempty"`
}

// Incremental describes a checkpoint stored as its changes over Parent.
type Incremental struct {
	Parent      string `json:"parent"`       // always the checkpoint's Parent
	SharedPages uint64 `json:"shared_pages"` // pages read from the chain, not stored here
}

// SharedBytes is what c's images read from its chain: with Size, the
// memory it represents.
func (c *Checkpoint) SharedBytes() int64 {
	if c.Incremental == nil {
		return 0
	}
	return int64(c.Incremental.SharedPages) * 4096
}

// Import records where an imported checkpoint came from.
type Import struct {
	Source     string    `json:"source"`      // the archive's file name; "-" for a stream
	OriginalID string    `json:"original_id"` // its id in the store it was exported from
	Time       time.Time `json:"time"`
}

// Checkpoint states.
const (
	// StateSealing: committed and listed, its images renamed into place,
	// its target released, but its files not yet hashed and fsynced.
	StateSealing = "sealing"
	StateSealed  = "sealed"
)

// IsSealing reports whether c's files are not yet hashed and durable.
func (c *Checkpoint) IsSealing() bool { return c.State == StateSealing }

// Size is the total size of the checkpoint's files.
func (c *Checkpoint) Size() int64 {
	var n int64
	for _, f := range c.Files {
		n += f.Size
	}
	return n
}

// NewID returns a fresh random checkpoint id.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// MaxNameLen bounds checkpoint and workload names.
const MaxNameLen = 64

// ValidateName checks a user-chosen name: it becomes part of paths, so it
// must not hold '/', '..' or anything else that could escape the state root.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("name is empty: %w", errdefs.ErrInvalidArgument)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name %.20q... is longer than %d characters: %w", name, MaxNameLen, errdefs.ErrInvalidArgument)
	case strings.Contains(name, ".."):
		return fmt.Errorf("name %q contains '..': %w", name, errdefs.ErrInvalidArgument)
	case !nameRE.MatchString(name):
		return fmt.Errorf("name %q: use letters, digits, '_', '.', '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func validID(id string) bool { return idRE.MatchString(id) }

// validRecord checks a record read from disk before it is trusted: its id
// names its directory, its name is one a user could have given, and its
// files are plain names inside that directory.
func validRecord(c *Checkpoint, id string) error {
	if c.ID != id {
		return fmt.Errorf("%s names checkpoint %q", MetadataFile, c.ID)
	}
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if c.Parent != "" && !validID(c.Parent) {
		return fmt.Errorf("parent %q is not a checkpoint id", c.Parent)
	}
	if c.Incremental != nil && c.Incremental.Parent != c.Parent {
		return fmt.Errorf("incremental over %q, but its parent is %q", c.Incremental.Parent, c.Parent)
	}
	for name, f := range c.Files {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || f.Size < 0 {
			return fmt.Errorf("file entry %q (size %d) is not a plain file of the checkpoint", name, f.Size)
		}
	}
	return nil
}
