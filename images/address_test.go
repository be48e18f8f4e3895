package images

import (
	"encoding/binary"
	"net"
	"testing"
)

func words(ip net.IP) []uint32 {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	var out []uint32
	for i := 0; i+4 <= len(ip); i += 4 {
		out = append(out, binary.NativeEndian.Uint32(ip[i:]))
	}
	return out
}

func TestLocalOnly(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"", true},
		{"0.0.0.0", true},
		{"127.0.0.1", true},
		{"127.3.2.1", true},
		{"::", true},
		{"::1", true},
		{"10.77.0.5", false},
		{"192.168.1.1", false},
		{"fe80::1", false},
	} {
		var w []uint32
		if c.addr != "" {
			w = words(net.ParseIP(c.addr))
		}
		if got := localOnly(w); got != c.want {
			t.Errorf("localOnly(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
	if localOnly([]uint32{1, 2}) {
		t.Error("an address of 8 bytes passed as local")
	}
}
