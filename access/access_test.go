package access

import (
	"context"
	"testing"

	"github.com/ckptd/ckptd/errdefs"
)

func TestCaller(t *testing.T) {
	if c := From(context.Background()); !c.IsRoot() {
		t.Errorf("no caller is %+v, want root", c)
	}
	user := Caller{UID: 1000, GID: 1000}
	ctx := With(context.Background(), user)
	for _, tc := range []struct {
		c     Caller
		owner uint32
		want  bool
	}{
		{Root, 1000, true},
		{Root, 0, true},
		{user, 1000, true},
		{user, 0, false},
		{user, 1001, false},
	} {
		if got := tc.c.Owns(tc.owner); got != tc.want {
			t.Errorf("%+v owns %d: %v, want %v", tc.c, tc.owner, got, tc.want)
		}
	}
	if err := From(ctx).Need("migrate"); !errdefs.IsPermissionDenied(err) {
		t.Errorf("a user's migrate: %v", err)
	}
	if err := Root.Need("migrate"); err != nil {
		t.Errorf("root's migrate: %v", err)
	}
}
