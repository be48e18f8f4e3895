package registry

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestSignaturesAccumulate: signatures of one manifest are added beside
// it, not replaced, and read back with their payloads.
func TestSignaturesAccumulate(t *testing.T) {
	srv := httptest.NewServer(ggcr.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/ckpt/x:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	image := host + "/ckpt/x@" + d.String()
	ctx, o := context.Background(), Options{Insecure: true}
	if sigs, err := Signatures(ctx, image, o); err != nil || len(sigs) != 0 {
		t.Fatalf("an unsigned image: %v, %v", sigs, err)
	}
	for _, sig := range []string{"c2lnMQ==", "c2lnMg=="} {
		if err := PushSignature(ctx, image, []byte(`{"p":1}`), sig, o); err != nil {
			t.Fatal(err)
		}
	}
	sigs, err := Signatures(ctx, image, o)
	if err != nil || len(sigs) != 2 || sigs[0].Value != "c2lnMQ==" || sigs[1].Value != "c2lnMg==" || string(sigs[1].Payload) != `{"p":1}` {
		t.Fatalf("signatures %+v, %v", sigs, err)
	}
}
