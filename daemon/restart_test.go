package daemon

import (
	"testing"

	"github.com/ckptd/ckptd/store"
)

func TestParseRestart(t *testing.T) {
	for _, c := range []struct {
		in    string
		ckpt  bool
		want  *store.RestartPolicy
		fails bool
	}{
		{"", false, nil, false},
		{"no", false, nil, false},
		{"always", false, &store.RestartPolicy{Always: true}, false},
		{"always", true, &store.RestartPolicy{Always: true, FromCheckpoint: true}, false},
		{"on-failure", false, &store.RestartPolicy{}, false},
		{"on-failure:3", false, &store.RestartPolicy{Max: 3}, false},
		{"on-failure:0", false, nil, true},
		{"on-failure:x", false, nil, true},
		{"always:2", false, nil, true},
		{"sometimes", false, nil, true},
		{"no", true, nil, true},
	} {
		got, err := parseRestart(c.in, c.ckpt)
		if (err != nil) != c.fails || !c.fails && (got == nil) != (c.want == nil) || got != nil && c.want != nil && *got != *c.want {
			t.Errorf("parseRestart(%q, %v) = %+v, %v; want %+v (fails %v)", c.in, c.ckpt, got, err, c.want, c.fails)
		}
	}
}
