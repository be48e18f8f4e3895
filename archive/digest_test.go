package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestDigestReader(t *testing.T) {
	data := []byte("an archive and its trailer")
	sum := sha256.Sum256(data)
	good := "sha256:" + hex.EncodeToString(sum[:])
	long := append(bytes.Clone(data), make([]byte, maxTrailer+1)...)
	for _, tc := range []struct {
		name, digest string
		size         int64
		data         []byte
		want         string // "" for success, else in the error
	}{
		{"match", good, int64(len(data)), data, ""},
		{"match, size unknown", good, 0, data, ""},
		{"other content", good, 0, []byte("another archive, same length"), "has digest"},
		{"wrong size", good, 5, data, "want 5"},
		{"long trailer", good, 0, long, "follow the archive's end"},
		{"not sha256", "md5:00", 0, data, "want sha256"},
		{"short hex", "sha256:abc", 0, data, "want sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDigestReader(bytes.NewReader(tc.data), tc.digest, tc.size)
			if err == nil {
				head := make([]byte, 8) // a reader stops early; Finish reads the rest
				_, err = d.Read(head)
				if err == nil {
					err = d.Finish()
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
