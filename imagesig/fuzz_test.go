package imagesig

import "testing"

// FuzzVerify: any payload a registry serves, even validly signed, is
// parsed without panic, and passes only as the simple-signing payload of
// the manifest and repository asked for.
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
		if Verify(pk, data, sig, "reg/a", "sha256:aa") == nil && Verify(pk, data, sig, "reg/b", "sha256:aa") == nil {
			t.Fatal("a payload passed for two repositories")
		}
	})
}
