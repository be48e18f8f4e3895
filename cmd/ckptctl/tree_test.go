package main

import (
	"testing"

	apiv1 "github.com/ckptd/ckptd/api/v1"
)

func TestRenderTree(t *testing.T) {
	ck := func(id, name, parent string, at int64) *apiv1.Checkpoint {
		return &apiv1.Checkpoint{Id: id, Name: name, Parent: parent, CreatedUnixNano: at,
			Target: &apiv1.TargetRef{Kind: "workload", Name: "web"}, Size: 2048}
	}
	cks := []*apiv1.Checkpoint{
		ck("a1", "web-1", "", 1), ck("b2", "web-2", "a1", 2), ck("c3", "copy-1", "a1", 3),
		ck("d4", "lost-parent", "zz", 4),
	}
	targets := []*apiv1.Target{{Ref: &apiv1.TargetRef{Kind: "workload", Name: "copy", Pid: 7}, RestoredFrom: "a1", Running: true}}
	want := `web-1 (a1) of web, 2.0KiB
├── restored as copy, pid 7 (running)
├── web-2 (b2) of web, 2.0KiB
└── copy-1 (c3) of web, 2.0KiB
lost-parent (d4) of web, 2.0KiB
`
	if got := renderTree(cks, targets); got != want {
		t.Errorf("renderTree:\n%s\nwant:\n%s", got, want)
	}
}
