package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func (c *cli) eventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Stream what happens (created, sealed, restored, removed, pruned, failed...) until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			stream, err := cl.Events(c.ctx(), &apiv1.EventsRequest{})
			if err != nil {
				return err
			}
			for {
				e, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if n := e.GetDropped(); n > 0 {
					fmt.Fprintf(os.Stderr, "warning: %d events missed (this client was too slow)\n", n)
				}
				if c.output == "json" {
					b, err := json.Marshal(eventJSON(e))
					if err != nil {
						return err
					}
					fmt.Println(string(b))
					continue
				}
				fmt.Println(eventLine(e))
			}
		},
	}
}

// eventLine is one event as a line: time, kind, then what is known.
func eventLine(e *apiv1.Event) string {
	parts := []string{time.Unix(0, e.GetTimeUnixNano()).Format("15:04:05.000"), e.GetKind()}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("op", e.GetOp())
	add("target", e.GetTarget())
	add("checkpoint", shortID(e.GetCheckpoint()))
	add("name", e.GetName())
	if d := e.GetDurationNs(); d > 0 {
		add("took", time.Duration(d).Round(time.Millisecond).String())
	}
	if f := e.GetFrozenNs(); f > 0 {
		add("frozen", time.Duration(f).Round(time.Millisecond).String())
	}
	if b := e.GetBytes(); b > 0 {
		add("bytes", humanBytes(b))
	}
	if msg := e.GetError(); msg != "" {
		parts = append(parts, "error="+fmt.Sprintf("%q", msg))
	}
	return strings.Join(parts, " ")
}

// eventJSON is an event as one JSON object whose numbers are numbers
// (protojson writes 64-bit ones as strings).
func eventJSON(e *apiv1.Event) map[string]any {
	m := map[string]any{"time_unix_nano": e.GetTimeUnixNano(), "kind": e.GetKind()}
	for k, v := range map[string]string{"op": e.GetOp(), "target": e.GetTarget(), "checkpoint": e.GetCheckpoint(),
		"name": e.GetName(), "error": e.GetError()} {
		if v != "" {
			m[k] = v
		}
	}
	for k, v := range map[string]int64{"duration_ns": e.GetDurationNs(), "frozen_ns": e.GetFrozenNs(),
		"bytes": e.GetBytes(), "dropped": int64(e.GetDropped())} {
		if v != 0 {
			m[k] = v
		}
	}
	return m
}
