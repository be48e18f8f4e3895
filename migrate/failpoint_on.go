//go:build failpoints

package migrate

import "os"

// cutBefore, in binaries built with -tags failpoints (the integration
// tests' ckptd), names a message kind this side never sends: it closes
// the connection instead, as a network cut would, so that the tests can
// cut a migration at each message of the protocol.
var cutBefore = os.Getenv("CKPTD_FAILPOINT_CUT_BEFORE")
