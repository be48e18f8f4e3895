//go:build failpoints

package store

import "os"

// bootIDOverride, in binaries built with -tags failpoints (the
// integration tests' ckptd), stands in for the kernel's boot id: a test
// starts ckptd with another one, as a reboot would.
var bootIDOverride = os.Getenv("CKPTD_FAILPOINT_BOOT_ID")
