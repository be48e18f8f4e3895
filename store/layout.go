package store

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Layout is the single owner of ckptd's on-disk layout under the state root:
//
//	<root>/index.db              bbolt index: checkpoints, names, targets
//	<root>/targets/<key>.json    each target's record (key path-escaped), written
//	                             before the index's: a lost index readmits them
//	<root>/staging/<id>/         a checkpoint being written (removed on start)
//	<root>/checkpoints/<id>/     published checkpoints: CRIU images, dump.log, checkpoint.json
//	<root>/quarantine/<id>/      checkpoints held out of the index (damaged, unreadable
//	                             record): a checkpoint's files plus quarantine.json
//	<root>/removing/<id>/        a checkpoint rm took out of the index, being deleted
//	<root>/workloads/<name>/     logs of workloads ckptd launched or restored; tty.sock
//	                             serves a workload's terminal session
//	<root>/terminals/<pid>/      the terminal session of a shell job ckptd restored:
//	                             tty.sock, output.log
//	<root>/containers/<ns>/<id>/ logs of containers ckptd restored
//	<root>/dumps/<id>/           CRIU work dir of a dump (dump.log, stats-dump); its
//	                             files move into the checkpoint, it stays only on failure;
//	                             paused.json names a container the dump paused, until resumed
//	<root>/dumps/<id>/images/    a migration's CRIU images before they are sent
//	<root>/restores/<op>/        CRIU work dirs of restores (restore.log, stats-restore)
//	<root>/groups/<id>.json      a complete group checkpoint: written after every member
//	<root>/criu/<pgid>           a CRIU process group ckptd started and has not seen end;
//	                             the next ckptd ends it before touching anything else
type Layout struct{ Root string }

// Files of a checkpoint besides CRIU's images.
const (
	MetadataFile      = "checkpoint.json"
	ContainerSpecFile = "config.json"     // a container's OCI runtime spec
	RootfsDiffFile    = "rootfs-diff.tar" // a container's writable layer
	// DevShmFile holds /dev/shm of a container Podman checkpointed, whose
	// /dev/shm was a bind mount CRIU did not save.
	DevShmFile = "devshm-checkpoint.tar"
	// ScrollbackFile is what a terminal workload's session showed last,
	// which a restored copy's session replays first.
	ScrollbackFile = "terminal-scrollback"
	PausedFile     = "paused.json"     // in a dump's work dir
	QuarantineNote = "quarantine.json" // why and when a checkpoint was quarantined
)

func (l Layout) Index() string               { return filepath.Join(l.Root, "index.db") }
func (l Layout) StagingDir() string          { return filepath.Join(l.Root, "staging") }
func (l Layout) Staging(id string) string    { return filepath.Join(l.StagingDir(), id) }
func (l Layout) CheckpointsDir() string      { return filepath.Join(l.Root, "checkpoints") }
func (l Layout) Checkpoint(id string) string { return filepath.Join(l.CheckpointsDir(), id) }
func (l Layout) QuarantineDir() string       { return filepath.Join(l.Root, "quarantine") }
func (l Layout) Quarantine(id string) string { return filepath.Join(l.QuarantineDir(), id) }
func (l Layout) TrashDir() string            { return filepath.Join(l.Root, "removing") }
func (l Layout) Trash(id string) string      { return filepath.Join(l.TrashDir(), id) }
func (l Layout) TargetsDir() string          { return filepath.Join(l.Root, "targets") }
func (l Layout) WorkloadsDir() string        { return filepath.Join(l.Root, "workloads") }
func (l Layout) Workload(name string) string { return filepath.Join(l.WorkloadsDir(), name) }

// TargetRecord is the file that keeps the record of the target with key.
func (l Layout) TargetRecord(key string) string {
	return filepath.Join(l.TargetsDir(), url.PathEscape(key)+".json")
}

// TerminalSocket is where the holder of terminal session name listens:
// name is a workload's, or pid/N for a host process.
func (l Layout) TerminalSocket(name string) string {
	return filepath.Join(l.terminalDir(name), "tty.sock")
}

// TerminalLog is the output of a host process's terminal session (a
// workload's goes to its log).
func (l Layout) TerminalLog(name string) string {
	return filepath.Join(l.terminalDir(name), "output.log")
}

func (l Layout) terminalDir(name string) string {
	if pid, ok := strings.CutPrefix(name, "pid/"); ok {
		return filepath.Join(l.Root, "terminals", pid)
	}
	return l.Workload(name)
}
func (l Layout) ContainersDir() string { return filepath.Join(l.Root, "containers") }
func (l Layout) Container(ns, id string) string {
	return filepath.Join(l.ContainersDir(), ns, id)
}
func (l Layout) DumpsDir() string      { return filepath.Join(l.Root, "dumps") }
func (l Layout) Dump(id string) string { return filepath.Join(l.DumpsDir(), id) }
func (l Layout) RestoresDir() string   { return filepath.Join(l.Root, "restores") }
func (l Layout) HelpersDir() string    { return filepath.Join(l.Root, "criu") }

// NetworkDir keeps CNI's cache and address allocations; NetNSDir the
// workloads' network namespaces (bind mounts).
func (l Layout) NetworkDir() string { return filepath.Join(l.Root, "network") }
func (l Layout) NetNSDir() string   { return filepath.Join(l.Root, "netns") }

// GroupsDir holds group checkpoints' records; Group is one.
func (l Layout) GroupsDir() string      { return filepath.Join(l.Root, "groups") }
func (l Layout) Group(id string) string { return filepath.Join(l.GroupsDir(), id+".json") }

// PersistedFile lists the targets that outlive a reboot.
func (l Layout) PersistedFile() string { return filepath.Join(l.Root, "persisted.json") }

// DumpImages is where a migration's source writes the images it sends.
func (l Layout) DumpImages(id string) string { return filepath.Join(l.Dump(id), "images") }

// Ensure creates the state root and its directories, owner-only.
func (l Layout) Ensure() error {
	for _, d := range []string{l.Root, l.StagingDir(), l.CheckpointsDir(), l.QuarantineDir(), l.TrashDir(), l.TargetsDir(), l.WorkloadsDir(), l.ContainersDir(), l.DumpsDir(), l.RestoresDir(), l.NetworkDir(), l.NetNSDir(), l.GroupsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		// Checkpoints hold whole memories: root's alone, whatever made the
		// directory before.
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	return nil
}
