package notify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Handler is what a workload does at each message; a nil function is a
// message it takes no action on.
type Handler struct {
	// Prepare runs before the freeze; what it returns is kept with the
	// checkpoint (at most MaxPayload bytes). An error fails the
	// checkpoint.
	Prepare func() ([]byte, error)
	// Sealed runs once checkpoint id is durable.
	Sealed func(id string)
	// Restored runs after a restore from checkpoint id, with what Prepare
	// returned then.
	Restored func(id string, payload []byte)
}

// Serve listens on the socket the environment names and answers ckptd
// until ctx ends. Without CKPTD_NOTIFY_SOCKET (not run by ckptd) it
// returns at once with an error.
func Serve(ctx context.Context, h Handler) error {
	name := os.Getenv(Env)
	if !strings.HasPrefix(name, "@") {
		return fmt.Errorf("%s is %q: not run by ckptd", Env, name)
	}
	ln, err := net.Listen("unix", name)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		answer(c, h)
	}
}

// answer handles one message, then closes: ckptd waits for that close
// before the freeze.
func answer(c net.Conn, h Handler) {
	defer c.Close()
	line, err := readLine(bufio.NewReader(c))
	if err != nil {
		return
	}
	word, rest, _ := strings.Cut(line, " ")
	reply := "ok"
	switch word {
	case Prepare:
		var p []byte
		if h.Prepare != nil {
			p, err = h.Prepare()
		}
		switch {
		case err != nil:
			reply = "error " + oneLine(err)
		case len(p) > MaxPayload:
			reply = fmt.Sprintf("error payload of %d bytes, at most %d", len(p), MaxPayload)
		case len(p) > 0:
			reply = "ready " + encode(p)
		default:
			reply = "ready"
		}
	case Sealed:
		if h.Sealed != nil {
			h.Sealed(rest)
		}
	case Restored:
		id, enc, _ := strings.Cut(rest, " ")
		p, err := decode(enc)
		if err != nil {
			reply = "error " + oneLine(err)
		} else if h.Restored != nil {
			h.Restored(id, p)
		}
	default:
		reply = "error unknown message " + oneLine(errors.New(word))
	}
	c.Write([]byte(reply + "\n"))
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }
