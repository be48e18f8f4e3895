package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
)

// Encrypted archives: a checkpoint holds a process's whole memory, so an
// export may be encrypted to age recipients (X25519 "age1..." keys or SSH
// public keys) before it leaves the host; import decrypts it with an
// identity file, as `age -d -i FILE` does. The archive inside is the same.

// ageHeader opens every age file.
const ageHeader = "age-encryption.org/v1\n"

// ParseRecipients reads age recipients: "age1..." keys, SSH public keys
// ("ssh-ed25519 AAAA...", "ssh-rsa AAAA..."), or @FILE for a file of them,
// one per line ('#' starts a comment), as age's -R takes.
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, k := range keys {
		if path, ok := strings.CutPrefix(k, "@"); ok {
			rs, err := recipientsFile(path)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
			continue
		}
		r, err := parseRecipient(k)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRecipient(k string) (age.Recipient, error) {
	k = strings.TrimSpace(k)
	if strings.HasPrefix(k, "ssh-") {
		r, err := agessh.ParseRecipient(k)
		if err != nil {
			return nil, fmt.Errorf("recipient %.24q...: %w", k, err)
		}
		return r, nil
	}
	r, err := age.ParseX25519Recipient(k)
	if err != nil {
		return nil, fmt.Errorf("recipient %.24q: want an age1... key, an SSH public key or @FILE: %w", k, err)
	}
	return r, nil
}

func recipientsFile(path string) ([]age.Recipient, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipients file: %w", err)
	}
	var out []age.Recipient
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := parseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("recipients file %s: %w", path, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("recipients file %s names no recipient", path)
	}
	return out, nil
}

// Encrypt wraps w so that what is written reaches it encrypted to rs;
// Close writes the last chunk.
func Encrypt(w io.Writer, rs []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, rs...)
}

// ErrEncrypted is an encrypted archive read without an identity.
var ErrEncrypted = errors.New("the archive is encrypted (age): give --identity FILE")

// Decrypt returns what to read of the archive r: r itself when it is not
// encrypted, else its plaintext, decrypted with the identities in
// identityFile (age's format: AGE-SECRET-KEY-1... lines, or an SSH
// private key); encrypted says which it was.
func Decrypt(r io.Reader, identityFile string) (_ io.Reader, encrypted bool, _ error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(len(ageHeader))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	if string(head) != ageHeader {
		return br, false, nil
	}
	if identityFile == "" {
		return nil, true, ErrEncrypted
	}
	ids, err := readIdentities(identityFile)
	if err != nil {
		return nil, true, err
	}
	pr, err := age.Decrypt(br, ids...)
	if err != nil {
		return nil, true, fmt.Errorf("decrypt the archive with %s: %w", identityFile, err)
	}
	return pr, true, nil
}

func readIdentities(path string) ([]age.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	if strings.Contains(string(b), "PRIVATE KEY-----") {
		id, err := agessh.ParseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("identity file %s: %w", path, err)
		}
		return []age.Identity{id}, nil
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return ids, nil
}
