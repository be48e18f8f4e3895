package imagesig

import "testing"

// FuzzVerify: any payload a registry serves, even validly signed, is
// parsed without panic, passes only as the simple-signing payload of the
// manifest asked for, and names one image.
func FuzzVerify(f *testing.F) {
	priv, pub, _ := GenerateKey(nil)
	key, _ := ParsePrivateKey(priv, nil)
	pk, _ := ParsePublicKey(pub)
	f.Add(Payload("reg/a:1", "sha256:aa"))
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"reg/a"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"x"},"optional":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sig, err := Sign(key, data)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := Verify(pk, data, sig, "sha256:aa")
		if err == nil && ref == "" {
			t.Fatal("a payload passed naming no image")
		}
		if _, err := Verify(pk, data, sig, "sha256:ab"); err == nil {
			t.Fatal("a payload passed for two manifests")
		}
	})
}
