//go:build failpoints

package daemon

import "os"

// wireFail, in binaries built with -tags failpoints (the integration
// tests' ckptd), fails every restore's network wiring once it is done,
// with this text: the tests provoke a wiring that fails while CRIU
// restores.
var wireFail = os.Getenv("CKPTD_FAILPOINT_WIRE_FAIL")
