package daemon

import (
	"reflect"
	"testing"

	"github.com/ckptd/ckptd/errdefs"
)

func TestParseHooks(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want map[string]string
		bad  bool
	}{
		{nil, nil, false},
		{[]string{"prepare=echo 1", "sealed=a=b", "restored=x"}, map[string]string{"prepare": "echo 1", "sealed": "a=b", "restored": "x"}, false},
		{[]string{"dump=true"}, nil, true},
		{[]string{"prepare"}, nil, true},
		{[]string{"prepare=  "}, nil, true},
	} {
		got, err := parseHooks(tc.in)
		if tc.bad != (err != nil) || tc.bad && !errdefs.IsInvalidArgument(err) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, %v", tc.in, got, err)
		}
	}
}
