//go:build !failpoints

package store

// bootIDOverride is empty outside test builds: see bootid_failpoint.go.
const bootIDOverride = ""
