//go:build !failpoints

package daemon

// wireFail is empty outside test builds: see failpoint_on.go.
const wireFail = ""
