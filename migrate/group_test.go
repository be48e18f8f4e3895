package migrate

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestValidateGroupStep(t *testing.T) {
	id := "0123456789abcdef"
	many := make([]string, MaxGroupTargets+1)
	for i := range many {
		many[i] = "w"
	}
	for _, c := range []struct {
		name string
		step *GroupStep
		ok   bool
	}{
		{"targets", &GroupStep{ID: id, Name: "g", Targets: []string{"web", "1234"}}, true},
		{"members", &GroupStep{ID: id, Members: []GroupMember{{Checkpoint: id, Host: "10.0.0.2:7070", Name: "web-1", Target: "web"}}}, true},
		{"no body", nil, false},
		{"bad id", &GroupStep{ID: "../x"}, false},
		{"target path", &GroupStep{ID: id, Targets: []string{"../etc"}}, false},
		{"target host", &GroupStep{ID: id, Targets: []string{"10.0.0.2:7070:web"}}, false},
		{"container", &GroupStep{ID: id, Targets: []string{"ctr:default/x"}}, false},
		{"too many", &GroupStep{ID: id, Targets: many}, false},
		{"member id", &GroupStep{ID: id, Members: []GroupMember{{Checkpoint: "x"}}}, false},
		{"member host", &GroupStep{ID: id, Members: []GroupMember{{Checkpoint: id, Host: strings.Repeat("h", 300)}}}, false},
		{"timeout", &GroupStep{ID: id, PrepareTimeout: int64(2 * time.Hour)}, false},
	} {
		if err := ValidateGroupStep(KindGroupPrepare, c.step); (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// FuzzGroupStep: any message a coordinator sends is read and validated
// or refused cleanly; one that passes names only plain targets.
func FuzzGroupStep(f *testing.F) {
	var buf bytes.Buffer
	if err := writeMessage(&buf, &Message{Kind: KindGroupPrepare, Group: &GroupStep{ID: "0123456789abcdef", Name: "g", Targets: []string{"web"}}}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := readMessage(bytes.NewReader(data))
		if err != nil || ValidateGroupStep(m.Kind, m.Group) != nil {
			return
		}
		for _, target := range m.Group.Targets {
			if strings.ContainsAny(target, "/:\x00") || target == ".." {
				t.Fatalf("target %q passed", target)
			}
		}
	})
}
