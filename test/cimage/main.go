// Command cimage copies an image as `skopeo copy` does, with the library
// skopeo is made of (containers/image): it checks the source against a
// policy.json and may sign the copy with a sigstore key. Debian bookworm's
// skopeo is built with sigstore disabled, so the interoperability tests
// use this instead. Only the docker:// and dir: transports are built in.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/signer"
	"go.podman.io/image/v5/signature/sigstore"
	"go.podman.io/image/v5/types"
)

type options struct {
	policy, registriesDir, signKey, passFile string
}

func main() {
	var o options
	flag.StringVar(&o.policy, "policy", "", "policy.json the source is checked against")
	flag.StringVar(&o.registriesDir, "registries.d", "", "registries.d directory (use-sigstore-attachments)")
	flag.StringVar(&o.signKey, "sign-by-sigstore-private-key", "", "sign the copy with this cosign private key")
	flag.StringVar(&o.passFile, "sign-passphrase-file", "", "file holding the key's passphrase")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: cimage [flags] SOURCE DESTINATION (docker://REF or dir:PATH)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 || o.policy == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), o, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintln(os.Stderr, "cimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, from, to string) error {
	policy, err := signature.NewPolicyFromFile(o.policy)
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	src, err := parse(from)
	if err != nil {
		return err
	}
	dst, err := parse(to)
	if err != nil {
		return err
	}
	// The registries are the tests' own, on loopback and in the clear.
	sys := &types.SystemContext{RegistriesDirPath: o.registriesDir, DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	opts := &copy.Options{SourceCtx: sys, DestinationCtx: sys}
	if o.signKey != "" {
		s, err := newSigner(o.signKey, o.passFile)
		if err != nil {
			return err
		}
		defer s.Close()
		opts.Signers = []*signer.Signer{s}
	}
	_, err = copy.Image(ctx, pc, dst, src, opts)
	return err
}

func newSigner(key, passFile string) (*signer.Signer, error) {
	var pass []byte
	if passFile != "" {
		b, err := os.ReadFile(passFile)
		if err != nil {
			return nil, err
		}
		pass = []byte(strings.TrimRight(string(b), "\n"))
	}
	return sigstore.NewSigner(sigstore.WithPrivateKeyFile(key, pass))
}

func parse(name string) (types.ImageReference, error) {
	if p, ok := strings.CutPrefix(name, "dir:"); ok {
		return directory.NewReference(p)
	}
	if r, ok := strings.CutPrefix(name, "docker:"); ok {
		return docker.ParseReference(r)
	}
	return nil, errors.New(name + ": want docker://REF or dir:PATH")
}
