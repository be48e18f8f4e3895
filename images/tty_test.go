package images

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"google.golang.org/protobuf/proto"
)

func writeImage(t *testing.T, path, magic string, entries ...proto.Message) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := &crit.CriuImage{Magic: magic}
	for _, e := range entries {
		img.Entries = append(img.Entries, &crit.CriuEntry{Message: e})
	}
	if err := crit.New(nil, f, "", false, false).Encode(img); err != nil {
		t.Fatal(err)
	}
}

func ttyInfo(typ tty.TtyType, sid, rows, cols uint32) *tty.TtyInfoEntry {
	return &tty.TtyInfoEntry{
		Id: proto.Uint32(1), Type: typ.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false),
		PacketMode: proto.Bool(false), Sid: proto.Uint32(sid), Pgrp: proto.Uint32(sid), Rdev: proto.Uint32(0),
		Winsize: &tty.WinsizeEntry{WsRow: proto.Uint32(rows), WsCol: proto.Uint32(cols), WsXpixel: proto.Uint32(0), WsYpixel: proto.Uint32(0)},
	}
}

func TestTerminalSize(t *testing.T) {
	root := &pstree.PstreeEntry{Pid: proto.Uint32(50), Ppid: proto.Uint32(0), Pgid: proto.Uint32(50), Sid: proto.Uint32(40)}
	for _, tc := range []struct {
		name  string
		infos []proto.Message // nil: no tty-info.img
		want  WindowSize
		found bool
	}{
		{name: "no terminal"},
		{name: "the session's terminal", infos: []proto.Message{ttyInfo(tty.TtyType_PTY, 40, 33, 111)}, want: WindowSize{33, 111}, found: true},
		{name: "another session's is skipped", infos: []proto.Message{
			ttyInfo(tty.TtyType_PTY, 7, 10, 20), ttyInfo(tty.TtyType_PTY, 40, 50, 132)}, want: WindowSize{50, 132}, found: true},
		{name: "no session's", infos: []proto.Message{ttyInfo(tty.TtyType_PTY, 0, 10, 20)}},
		{name: "not a pseudo-terminal", infos: []proto.Message{ttyInfo(tty.TtyType_CONSOLE, 40, 10, 20)}},
		{name: "no size", infos: []proto.Message{ttyInfo(tty.TtyType_PTY, 40, 0, 0)}},
		{name: "out of range", infos: []proto.Message{ttyInfo(tty.TtyType_PTY, 40, 1<<16, 80)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeImage(t, filepath.Join(dir, "pstree.img"), "PSTREE", root)
			if tc.infos != nil {
				writeImage(t, filepath.Join(dir, "tty-info.img"), "TTY_INFO", tc.infos...)
			}
			got, found, err := TerminalSize(dir)
			if err != nil || got != tc.want || found != tc.found {
				t.Fatalf("TerminalSize = %v, %v, %v; want %v, %v, nil", got, found, err, tc.want, tc.found)
			}
		})
	}
}

func TestTerminalSizeMalformed(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "pstree.img"), "PSTREE", &pstree.PstreeEntry{Pid: proto.Uint32(1), Ppid: proto.Uint32(0), Pgid: proto.Uint32(1), Sid: proto.Uint32(1)})
	path := filepath.Join(dir, "tty-info.img")
	writeImage(t, path, "TTY_INFO", ttyInfo(tty.TtyType_PTY, 1, 24, 80))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := TerminalSize(dir); err == nil {
		t.Fatal("a truncated tty-info.img was read without an error")
	}
}
