// Package notify tells a workload about its checkpoints, in the spirit of
// systemd's sd_notify: CRaC's beforeCheckpoint and afterRestore for any
// program. The workload listens on the abstract unix socket named in its
// environment (CKPTD_NOTIFY_SOCKET, "@name"); ckptd connects for each
// message, one line each way, and both close:
//
//	prepare          -> ready [PAYLOAD]   before the freeze; PAYLOAD (base64,
//	                                      at most 64 KiB decoded) is kept with
//	                                      the checkpoint, e.g. an input offset
//	sealed ID        -> ok                the checkpoint is durable: commit
//	                                      outside effects now
//	restored ID [PAYLOAD] -> ok           after a restore, with prepare's payload
//
// The socket is abstract, so it lives in the workload's network
// namespace: a copy in its own namespace listens on the same name, and
// nothing but a listening socket is in the tree when it is dumped (ckptd
// waits for the workload to close its end before the freeze).
package notify

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// validName is what ckptd names a workload's socket: the one name, or it
// and the workload's (in the host's network namespace).
var validName = regexp.MustCompile(`^@ckptd-notify(\.[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$`)

// ValidName says whether s is a name ckptd gives a workload's socket.
func ValidName(s string) bool { return validName.MatchString(s) }

// Env is the variable that names the socket.
const Env = "CKPTD_NOTIFY_SOCKET"

// MaxPayload bounds what prepare's answer may carry.
const MaxPayload = 64 << 10

// maxLine bounds one line of the protocol: a payload in base64 and a word.
const maxLine = MaxPayload/3*4 + 64

// Messages ckptd sends.
const (
	Prepare  = "prepare"
	Sealed   = "sealed"
	Restored = "restored"
)

// readLine reads one line of at most maxLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b.Write(part)
		if b.Len() > maxLine {
			return "", fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return b.String(), nil
		}
	}
}

// encode is a payload as it travels.
func encode(p []byte) string { return base64.StdEncoding.EncodeToString(p) }

// decode checks and decodes a payload.
func decode(s string) ([]byte, error) {
	if len(s) > maxLine {
		return nil, errors.New("payload too large")
	}
	p, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if len(p) > MaxPayload {
		return nil, fmt.Errorf("payload of %d bytes, at most %d", len(p), MaxPayload)
	}
	return p, nil
}
