package main

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ckptd/ckptd/imagesig"
	"github.com/ckptd/ckptd/registry"
)

// defaultPolicy is the trust policy pulls are checked against.
const defaultPolicy = "/etc/ckptd/policy.json"

func (c *cli) signingKeyCmd() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:   "signing-key DIR",
		Short: "Create a key pair for push --sign in DIR (cosign.key, encrypted as cosign does, and cosign.pub)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := passphrase(passFile)
			if err != nil {
				return err
			}
			priv, pub, err := imagesig.GenerateKey(pass)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(args[0], 0o700); err != nil {
				return err
			}
			for name, data := range map[string][]byte{"cosign.key": priv, "cosign.pub": pub} {
				path := filepath.Join(args[0], name)
				if _, err := os.Stat(path); err == nil {
					return fmt.Errorf("%s exists; not overwritten", path)
				}
				if err := os.WriteFile(path, data, 0o600); err != nil {
					return err
				}
			}
			fmt.Printf("signing key written to %s (cosign.key, cosign.pub)\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "file whose first line is the key's passphrase (default: $CKPTD_SIGN_PASSPHRASE, or none)")
	return cmd
}

// passphrase is the first line of file, or $CKPTD_SIGN_PASSPHRASE.
func passphrase(file string) ([]byte, error) {
	if file == "" {
		return []byte(os.Getenv("CKPTD_SIGN_PASSPHRASE")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return []byte(line), nil
}

// signPushed signs the image pushed as REPOSITORY@DIGEST under the
// reference ref, with the cosign key in keyFile, and attaches the
// signature beside it.
func signPushed(ctx context.Context, ref, pushed, keyFile, passFile string, o registry.Options) error {
	key, err := signingKey(keyFile, passFile)
	if err != nil {
		return err
	}
	_, digest, _ := strings.Cut(pushed, "@")
	payload := imagesig.Payload(ref, digest)
	sig, err := imagesig.Sign(key, payload)
	if err != nil {
		return err
	}
	return registry.PushSignature(ctx, pushed, payload, sig, o)
}

// verifyPulled checks the image asked for as ref and pulled as
// REPOSITORY@DIGEST against the trust policy in policyFile.
func verifyPulled(ctx context.Context, ref, pulled, policyFile string, o registry.Options) error {
	policy, err := imagesig.LoadPolicy(policyFile)
	if os.IsNotExist(err) {
		return fmt.Errorf("no trust policy at %s to check %s against (--policy FILE; --insecure-skip-verify pulls unchecked)", policyFile, pulled)
	}
	if err != nil {
		return err
	}
	repo, digest, _ := strings.Cut(pulled, "@")
	sigs, err := registry.Signatures(ctx, pulled, o)
	if err != nil {
		return err
	}
	if err := imagesig.Check(policy.For(repo), imagesig.Image{Ref: ref, Repo: repo, Digest: digest}, sigs); err != nil {
		return fmt.Errorf("pull %s: %w", pulled, err)
	}
	return nil
}

// signingKey reads the cosign private key in keyFile.
func signingKey(keyFile, passFile string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	pass, err := passphrase(passFile)
	if err != nil {
		return nil, err
	}
	return imagesig.ParsePrivateKey(data, pass)
}
