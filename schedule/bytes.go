package schedule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ckptd/ckptd/errdefs"
)

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
	// CRIU's own suffixes (--ghost-limit 8M): powers of 1024.
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"t", 1 << 40}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10},
}

// ParseBytes reads a size such as "20GiB", "512MiB", "1.5GB", "8M" (as
// CRIU writes it, 1024-based) or "4096".
func ParseBytes(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with K, M, G (1024-based, as CRIU), KiB, MiB, GiB or TiB: %w", s, errdefs.ErrInvalidArgument)
	}
	return int64(f * float64(mult)), nil
}
