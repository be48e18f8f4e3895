package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/ckptd/ckptd/schedule"
)

// sizeFlag is a byte count given as CRIU takes one ("8M") or with binary
// or decimal units ("8MiB", "8MB"), or in bytes; max bounds it.
type sizeFlag struct {
	n   *int64
	max int64
}

func (s sizeFlag) String() string {
	if s.n == nil {
		return "0"
	}
	return strconv.FormatInt(*s.n, 10)
}

func (s sizeFlag) Set(v string) error {
	n, err := schedule.ParseBytes(v)
	if err != nil {
		return err
	}
	if n > s.max {
		return fmt.Errorf("%s is more than %d bytes", v, s.max)
	}
	*s.n = n
	return nil
}

func (sizeFlag) Type() string { return "size" }

// uint32Size is a sizeFlag into a uint32 (CRIU's ghost limit).
type uint32Size struct {
	p *uint32
	n int64
}

func (u *uint32Size) String() string { return strconv.FormatUint(uint64(*u.p), 10) }

func (u *uint32Size) Set(v string) error {
	if err := (sizeFlag{n: &u.n, max: math.MaxUint32}).Set(v); err != nil {
		return err
	}
	*u.p = uint32(u.n)
	return nil
}

func (*uint32Size) Type() string { return "size" }
