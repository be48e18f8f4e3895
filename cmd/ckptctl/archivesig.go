package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/ckptd/ckptd/imagesig"
)

// signArchive writes file.sig, cosign sign-blob's detached signature of
// the archive whose SHA-256 is sum, with the cosign key in keyFile.
func signArchive(file string, sum []byte, keyFile, passFile string) error {
	key, err := signingKey(keyFile, passFile)
	if err != nil {
		return err
	}
	sig, err := imagesig.SignDigest(key, sum)
	if err != nil {
		return err
	}
	_, err = writeAtomic(file+".sig", func(w io.Writer) (int64, error) {
		n, err := io.WriteString(w, sig)
		return int64(n), err
	})
	return err
}

// archiveCheck is how an import is checked against the trust policy.
type archiveCheck struct {
	file, sigFile, policyFile string
	policySet, skip           bool
}

// verifier is what checks the archive as it is streamed, nil when
// nothing is to be checked. Its reader hashes the archive and, at its
// end, checks it against the trust policy: an archive that fails ends
// the read with the reason instead of io.EOF, so ckptd rolls back what it
// staged. The archive is read once.
func (a archiveCheck) verifier() (*checkAtEOF, error) {
	if a.skip {
		return nil, nil
	}
	policy, err := imagesig.LoadPolicy(a.policyFile)
	if os.IsNotExist(err) && !a.policySet {
		// With no policy on the host, an archive in hand is taken as
		// Podman takes one; the ingest boundary still applies.
		if a.sigFile != "" {
			fmt.Fprintf(os.Stderr, "warning: no trust policy at %s; %s is not checked\n", a.policyFile, a.sigFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	subject := a.file
	if a.file != "-" {
		if subject, err = filepath.Abs(a.file); err != nil {
			return nil, err
		}
	}
	sig, err := readSignature(a.sigFile)
	if err != nil {
		return nil, err
	}
	reqs := policy.ForArchive(subject)
	return &checkAtEOF{h: sha256.New(), check: func(sum []byte) error {
		return imagesig.CheckArchive(reqs, subject, sum, sig)
	}}, nil
}

// wrap makes c read the archive from in.
func (c *checkAtEOF) wrap(in io.Reader) io.Reader {
	if c == nil {
		return in
	}
	c.r = in
	return c
}

// after is out (what was read from c, decrypted) ending only when c has
// read and checked the whole archive, whatever out's reader left unread.
func (c *checkAtEOF) after(out io.Reader) io.Reader {
	if c == nil {
		return out
	}
	return &drainAtEOF{r: out, c: c}
}

type drainAtEOF struct {
	r io.Reader
	c *checkAtEOF
}

func (d *drainAtEOF) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if errors.Is(err, io.EOF) {
		if _, cerr := io.Copy(io.Discard, d.c); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

// readSignature is the detached signature in file, "" when there is none.
func readSignature(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	return imagesig.ReadSignature(file)
}

type checkAtEOF struct {
	r     io.Reader
	h     hash.Hash
	check func(sum []byte) error
	err   error
}

func (c *checkAtEOF) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if cerr := c.check(c.h.Sum(nil)); cerr != nil {
			err = cerr
		}
		c.err = err
	}
	return n, err
}
