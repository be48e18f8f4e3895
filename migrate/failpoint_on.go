//go:build failpoints

package migrate

import (
	"os"
	"sync"
	"time"
)

// cutBefore, in binaries built with -tags failpoints (the integration
// tests' ckptd), names a message kind this side never sends: it closes
// the connection instead, as a network cut would, so that the tests can
// cut a migration at each message of the protocol.
var cutBefore = os.Getenv("CKPTD_FAILPOINT_CUT_BEFORE")

// pauseBefore names a message kind before which this side writes the
// file pauseMark and waits (at most a minute) until the test removes it:
// the test partitions the network at that point of the protocol. It
// pauses once per ckptd.
var pauseBefore, pauseMark = os.Getenv("CKPTD_FAILPOINT_PAUSE_BEFORE"), os.Getenv("CKPTD_FAILPOINT_PAUSE_MARK")

var paused sync.Once

func pause(kind string) {
	if pauseBefore == "" || kind != pauseBefore || pauseMark == "" {
		return
	}
	paused.Do(func() { pauseOnce() })
}

func pauseOnce() {
	if os.WriteFile(pauseMark, nil, 0o600) != nil {
		return
	}
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(pauseMark); err != nil {
			return
		}
	}
}
