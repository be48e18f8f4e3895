package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/archive"
	"github.com/ckptd/ckptd/registry"
)

func (c *cli) pushCmd() *cobra.Command {
	var o registry.Options
	var encryptTo []string
	var signKey, passFile string
	cmd := &cobra.Command{
		Use:   "push CHECKPOINT REF",
		Short: "Store a checkpoint in an OCI registry as a checkpoint image (the form CRI-O and Podman restore from)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := registry.ParseRef(args[1], o); err != nil {
				return err
			}
			recipients, err := archive.ParseRecipients(encryptTo)
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			in, err := cl.Inspect(c.ctx(), &apiv1.InspectRequest{Checkpoint: args[0]})
			if err != nil {
				return err
			}
			stream, err := cl.Export(c.ctx(), &apiv1.ExportRequest{Checkpoint: args[0], Compression: "none"})
			if err != nil {
				return err
			}
			pr, pw := io.Pipe()
			progress := c.progress()
			go func() {
				w := &meter{w: pw, out: progress, start: time.Now(), what: "pushing"}
				var err error
				if len(recipients) > 0 { // here: ckptd never sees a key
					_, err = receiveEncrypted(stream, w, recipients)
				} else {
					_, err = receiveExport(stream, w)
				}
				pw.CloseWithError(err)
			}()
			meta := imageMeta(in.GetCheckpoint())
			meta.Encrypted = len(recipients) > 0
			pushed, err := registry.Push(c.ctx(), args[1], pr, meta, o)
			clearProgress(progress)
			if err != nil {
				return err
			}
			if signKey != "" {
				if err := signPushed(c.ctx(), args[1], pushed, signKey, passFile, o); err != nil {
					return fmt.Errorf("%s pushed as %s, but not signed: %w", args[0], pushed, err)
				}
			}
			if c.output == "json" {
				b, err := json.Marshal(map[string]string{"checkpoint": in.GetCheckpoint().GetId(), "image": pushed})
				fmt.Println(string(b))
				return err
			}
			fmt.Printf("%s pushed to %s\n", args[0], pushed)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "allow a plain-HTTP registry")
	cmd.Flags().StringArrayVar(&encryptTo, "encrypt-to", nil,
		"encrypt the layer (age) to this recipient, as export does; repeatable")
	cmd.Flags().StringVar(&signKey, "sign", "", "sign the image with this cosign key (ckptctl certs signing-key), as sigstore signs")
	cmd.Flags().StringVar(&passFile, "sign-passphrase-file", "", "file whose first line is the signing key's passphrase (default: $CKPTD_SIGN_PASSPHRASE)")
	return cmd
}

// imageMeta is what a checkpoint image says about checkpoint ck.
func imageMeta(ck *apiv1.Checkpoint) registry.Meta {
	m := registry.Meta{
		Name: ck.GetTarget().GetName(), ID: ck.GetId(),
		CRIUVersion: ck.GetCriuVersion(), Engine: "ckptd",
	}
	if ct := ck.GetContainer(); ct != nil {
		m.Name, m.RootfsImageName, m.RootfsImageID, m.Runtime = ct.GetId(), ct.GetImage(), ct.GetImageId(), "runc"
	}
	if m.Name == "" {
		m.Name = ck.GetName()
	}
	return m
}

func (c *cli) pullCmd() *cobra.Command {
	var o registry.Options
	var name, identity, policy string
	var skipVerify bool
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Add the checkpoint image REF from an OCI registry to the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			p, err := registry.Pull(c.ctx(), args[0], o)
			if err != nil {
				return err
			}
			defer p.Layer.Close()
			if !skipVerify {
				if err := verifyPulled(c.ctx(), args[0], p.Ref, policy, o); err != nil {
					return err
				}
			}
			progress := c.progress()
			in := &meter{w: io.Discard, out: progress, start: time.Now(), what: "pulling"}
			layer := io.Reader(io.TeeReader(p.Layer, in))
			chunk := &apiv1.ImportChunk{Name: name, Source: p.Ref, Digest: p.Digest, Size: p.Size}
			switch encrypted := p.Annotations[registry.AnnotationEncrypted] != ""; {
			case encrypted && identity == "":
				return fmt.Errorf("%s is encrypted: give --identity FILE", p.Ref)
			case encrypted:
				// Checked and decrypted here, so ckptd never sees a key; it
				// checks the plain archive as any other.
				if layer, err = decryptLayer(layer, p.Digest, p.Size, identity); err != nil {
					return err
				}
				chunk.Digest, chunk.Size = "", 0
			case identity != "":
				fmt.Fprintf(os.Stderr, "warning: %s is not encrypted; --identity is not used\n", p.Ref)
			}
			ck, err := sendImport(cl.Import, layer, chunk)
			clearProgress(progress)
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(ck)
			}
			fmt.Printf("%s %s pulled from %s (%s)\n", ck.GetName(), shortID(ck.GetId()), p.Ref, humanBytes(ck.GetSize()))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "checkpoint name (default: the image's)")
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "age identity file (or SSH private key) to decrypt an encrypted checkpoint image")
	cmd.Flags().StringVar(&policy, "policy", defaultPolicy, "trust policy the image's signatures are checked against (containers' policy.json form)")
	cmd.Flags().BoolVar(&skipVerify, "insecure-skip-verify", false, "pull without checking signatures against the trust policy")
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "allow a plain-HTTP registry")
	return cmd
}

// progress is where a long transfer reports itself: stderr when it is a
// terminal and the output is for people.
func (c *cli) progress() io.Writer {
	if isTerminal(os.Stderr) && c.output != "json" {
		return os.Stderr
	}
	return io.Discard
}

func clearProgress(w io.Writer) {
	if w != io.Discard {
		fmt.Fprint(w, "\r\033[K")
	}
}

// decryptLayer is the plain archive of an encrypted checkpoint image's
// layer: the gzip stream of its age ciphertext, checked against the
// layer's digest and size before its end is read.
func decryptLayer(layer io.Reader, digest string, size int64, identity string) (io.Reader, error) {
	checked, err := archive.NewDigestReader(layer, digest, size)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(checked)
	if err != nil {
		return nil, fmt.Errorf("encrypted layer: %w", err)
	}
	plain, _, err := archive.Decrypt(zr, identity)
	if err != nil {
		return nil, err
	}
	return &finishing{r: plain, finish: checked.Finish}, nil
}

// finishing is r whose end is only reached once finish passes: a layer
// that does not match its digest ends the stream with an error.
type finishing struct {
	r      io.Reader
	finish func() error
}

func (f *finishing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		if ferr := f.finish(); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}
