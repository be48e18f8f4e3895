package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/ckptd/ckptd/api"
	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/archive"
)

func (c *cli) exportCmd() *cobra.Command {
	var comp, signKey, passFile string
	var encryptTo []string
	cmd := &cobra.Command{
		Use:   "export CHECKPOINT FILE",
		Short: "Write a checkpoint to one archive (Podman's layout plus ckptd.json); FILE - is stdout",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			recipients, err := archive.ParseRecipients(encryptTo)
			if err != nil {
				return err
			}
			if err := writable(args[1]); err != nil {
				return err
			}
			if signKey != "" && args[1] == "-" {
				return errors.New("export --sign writes FILE.sig beside the archive: give a FILE, not -")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			stream, err := cl.Export(c.ctx(), &apiv1.ExportRequest{Checkpoint: args[0], Compression: comp})
			if err != nil {
				return err
			}
			receive := func(w io.Writer) (int64, error) { return receiveExport(stream, w) }
			if len(recipients) > 0 {
				receive = func(w io.Writer) (int64, error) { return receiveEncrypted(stream, w, recipients) }
			}
			if args[1] == "-" {
				_, err := receive(os.Stdout)
				return err
			}
			progress := c.progress()
			sum := sha256.New()
			n, err := writeAtomic(args[1], func(w io.Writer) (int64, error) {
				return receive(&meter{w: io.MultiWriter(w, sum), out: progress, start: time.Now(), what: "exporting"})
			})
			clearProgress(progress)
			if err != nil {
				return err
			}
			if signKey != "" {
				if err := signArchive(args[1], sum.Sum(nil), signKey, passFile); err != nil {
					return fmt.Errorf("%s was exported, but not signed: %w", args[1], err)
				}
			}
			if c.output == "json" {
				return printObject(map[string]any{"checkpoint": args[0], "file": args[1], "bytes": n})
			}
			fmt.Fprintf(os.Stderr, "%s exported to %s (%s)\n", args[0], args[1], humanBytes(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&comp, "compress", "zstd", "zstd, gzip or none")
	cmd.Flags().StringArrayVar(&encryptTo, "encrypt-to", nil,
		"encrypt the archive (age) to this recipient: an age1... key, an SSH public key, or @FILE of them; repeatable")
	cmd.Flags().StringVar(&signKey, "sign", "", "write FILE.sig, a detached signature of the archive (as cosign sign-blob), with this cosign private key")
	cmd.Flags().StringVar(&passFile, "sign-passphrase-file", "", "file whose first line is the signing key's passphrase (default: $CKPTD_SIGN_PASSPHRASE)")
	return cmd
}

// receiveEncrypted is receiveExport through age encryption to rs.
func receiveEncrypted(stream apiv1.Ckptd_ExportClient, w io.Writer, rs []age.Recipient) (int64, error) {
	cw := &countingWriter{w: w}
	enc, err := archive.Encrypt(cw, rs)
	if err != nil {
		return 0, err
	}
	if _, err := receiveExport(stream, enc); err != nil {
		return cw.n, err
	}
	return cw.n, enc.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

func receiveExport(stream apiv1.Ckptd_ExportClient, w io.Writer) (int64, error) {
	var n int64
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		k, err := w.Write(m.GetData())
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// writeAtomic writes path through a temp file beside it, readable by its
// owner alone (an archive holds a process's memory), renamed into place
// only when fill succeeded.
// writable refuses an export's FILE before anything is asked of ckptd: a
// directory, or a file in a directory that is missing.
func writable(path string) error {
	if path == "-" {
		return nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: give the archive's file name, such as %s", path, filepath.Join(path, "checkpoint.tar.zst"))
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("cannot write %s: directory %s does not exist", path, dir)
	}
	return nil
}

func writeAtomic(path string, fill func(io.Writer) (int64, error)) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name()) // no-op once renamed
	n, err := fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), path)
}

func (c *cli) importCmd() *cobra.Command {
	var name, identity string
	check := archiveCheck{policyFile: defaultPolicy}
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Add the checkpoint in an archive written by export to the store; FILE - is stdin",
		Long: "Add the checkpoint in an archive written by export to the store; FILE - is stdin.\n\n" +
			"When a trust policy exists (--policy, default " + defaultPolicy + "), the archive is checked against\n" +
			"its ckptd-archive scopes: a sigstoreSigned requirement wants FILE.sig (or --signature) made by its key.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			check.file, check.policySet = args[0], cmd.Flags().Changed("policy")
			if check.sigFile == "" && args[0] != "-" {
				if _, err := os.Stat(args[0] + ".sig"); err == nil {
					check.sigFile = args[0] + ".sig"
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			in, source := io.Reader(os.Stdin), "-"
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in, source = f, filepath.Base(args[0])
			}
			verify, err := check.verifier()
			if err != nil {
				return err
			}
			in, encrypted, err := archive.Decrypt(verify.wrap(in), identity)
			if err != nil {
				return err
			}
			in = verify.after(in)
			if identity != "" && !encrypted {
				fmt.Fprintf(os.Stderr, "warning: %s is not encrypted; --identity is not used\n", args[0])
			}
			ck, err := sendImport(cl.Import, in, &apiv1.ImportChunk{Name: name, Source: source})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(ck)
			}
			fmt.Printf("%s %s imported (%s)\n", ck.GetName(), shortID(ck.GetId()), humanBytes(ck.GetSize()))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "checkpoint name (default: the archive's)")
	cmd.Flags().StringVarP(&identity, "identity", "i", "", "age identity file (or SSH private key) to decrypt an encrypted archive")
	cmd.Flags().StringVar(&check.sigFile, "signature", "", "the archive's detached signature (default: FILE.sig, when it exists)")
	cmd.Flags().StringVar(&check.policyFile, "policy", defaultPolicy, "trust policy the archive is checked against (containers' policy.json form)")
	cmd.Flags().BoolVar(&check.skip, "insecure-skip-verify", false, "import without checking the archive against the trust policy")
	return cmd
}

// sendImport streams in to the daemon's Import, first carrying its
// metadata, and returns the checkpoint the daemon made of it. When in
// cannot be read to its end, the daemon is told and its answer awaited,
// so that nothing of the import is left when this returns.
func sendImport(open func(context.Context, ...grpc.CallOption) (apiv1.Ckptd_ImportClient, error), in io.Reader, first *apiv1.ImportChunk) (*apiv1.Checkpoint, error) {
	stream, err := open(context.Background())
	if err != nil {
		return nil, err
	}
	for {
		buf := make([]byte, api.ChunkSize) // gRPC may still hold the last one
		n, rerr := io.ReadFull(in, buf)
		if errors.Is(rerr, io.ErrUnexpectedEOF) {
			rerr = io.EOF
		}
		m, isFirst := first, first != nil
		if m == nil {
			m = &apiv1.ImportChunk{}
		}
		m.Data, first = buf[:n], nil
		if rerr != nil && rerr != io.EOF {
			m.Abort = rerr.Error()
		}
		if n > 0 || isFirst || m.Abort != "" {
			if err := stream.Send(m); err != nil {
				break // the server's answer says why
			}
		}
		if m.Abort != "" {
			_, err := stream.CloseAndRecv()
			return nil, errors.Join(rerr, ignoreAborted(err))
		}
		if rerr == io.EOF {
			break
		}
	}
	return stream.CloseAndRecv()
}

// ignoreAborted drops the daemon's echo of an abort the client sent.
func ignoreAborted(err error) error {
	if err != nil && strings.Contains(err.Error(), "the client stopped sending") {
		return nil
	}
	return err
}

// meter counts what passes to w and, at most five times a second, says so
// on out (a terminal): a progress line for long exports.
type meter struct {
	w     io.Writer
	out   io.Writer
	start time.Time
	what  string
	n     int64
	shown time.Time
}

func (m *meter) Write(p []byte) (int, error) {
	k, err := m.w.Write(p)
	m.n += int64(k)
	if now := time.Now(); now.Sub(m.shown) >= 200*time.Millisecond {
		m.shown = now
		rate := float64(m.n) / max(now.Sub(m.start).Seconds(), 1e-3)
		fmt.Fprintf(m.out, "\r%s: %s (%s/s)\033[K", m.what, humanBytes(m.n), humanBytes(int64(rate)))
	}
	return k, err
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
