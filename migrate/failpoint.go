//go:build !failpoints

package migrate

// cutBefore is empty outside test builds: see failpoint_on.go.
const cutBefore = ""

func pause(string) {}
