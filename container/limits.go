package container

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rlimitWarnings tells when a spec raises RLIMIT_NOFILE above this host's
// hard limit, which even root cannot exceed here. Starting such a container
// fails in runc with a bare "operation not permitted" (podman's default of
// 1048576 does that). A restore still works (seen here: the restored tree
// gets the limits saved in its images, not the spec's), so ckptd restores
// and says that the container cannot be started anew on this host.
func rlimitWarnings(spec *specs.Spec) ([]string, error) {
	var host unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &host); err != nil {
		return nil, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	return nofileWarnings(spec, host.Max), nil
}

func nofileWarnings(spec *specs.Spec, hostMax uint64) []string {
	if spec.Process == nil {
		return nil
	}
	var out []string
	for _, rl := range spec.Process.Rlimits {
		if rl.Type == "RLIMIT_NOFILE" && (rl.Hard > hostMax || rl.Soft > hostMax) {
			out = append(out, fmt.Sprintf("container spec sets RLIMIT_NOFILE to %d:%d, above this host's hard limit %d: restored, but runc cannot start this container anew here; lower the limit (podman: --ulimit nofile=1024:1024)",
				rl.Soft, rl.Hard, hostMax))
		}
	}
	return out
}
