package term

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// MakeRaw puts the terminal fd in raw mode, as an attached client needs
// it: every key goes to the session, which echoes it. The returned
// function puts the terminal back.
func MakeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// SizeOf is the window size of terminal fd.
func SizeOf(fd int) (Size, error) {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return Size{}, err
	}
	return Size{ws.Row, ws.Col}, nil
}

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// DefaultDetachKeys detach a client, as in docker and podman.
const DefaultDetachKeys = "ctrl-p,ctrl-q"

// ParseDetachKeys reads a detach sequence: comma-separated keys, each
// "ctrl-X" (X a letter or one of @[\]^_) or a single character.
func ParseDetachKeys(s string) ([]byte, error) {
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		switch c, ok := strings.CutPrefix(strings.ToLower(k), "ctrl-"); {
		case ok && len(c) == 1 && c[0] >= 'a' && c[0] <= 'z':
			keys = append(keys, c[0]-'a'+1)
		case ok && len(c) == 1 && strings.Contains("@[\\]^_", c):
			keys = append(keys, strings.ToUpper(c)[0]-'@')
		case !ok && len(k) == 1:
			keys = append(keys, k[0])
		default:
			return nil, fmt.Errorf("detach key %q: want ctrl-X or one character", k)
		}
	}
	return keys, nil
}

// Detacher finds the detach sequence in a client's keystrokes. Keys that
// may begin the sequence are held back until the next keys tell.
type Detacher struct {
	keys []byte
	held int
}

func NewDetacher(keys []byte) *Detacher { return &Detacher{keys: keys} }

// Feed returns the keys to send on, and whether the sequence completed
// (the keys after it are dropped: the client is leaving).
func (d *Detacher) Feed(p []byte) (out []byte, detach bool) {
	for _, b := range p {
		if b == d.keys[d.held] {
			d.held++
			if d.held == len(d.keys) {
				return out, true
			}
			continue
		}
		out = append(out, d.keys[:d.held]...)
		d.held = 0
		if b == d.keys[0] {
			if len(d.keys) == 1 {
				return out, true
			}
			d.held = 1
			continue
		}
		out = append(out, b)
	}
	return out, false
}
