package api

import (
	"errors"
	"fmt"
	"io"

	apiv1 "github.com/ckptd/ckptd/api/v1"
	"github.com/ckptd/ckptd/daemon"
	"github.com/ckptd/ckptd/errdefs"
)

// ChunkSize is the data a streamed message carries, either way: well
// under gRPC's 4 MiB limit, and with its encoding (data and a few bytes
// of framing) within the 1 MiB tier of gRPC's buffer pool, where a larger
// one is a fresh, zeroed allocation each.
const ChunkSize = 1<<20 - 64

func (s *Server) Export(r *apiv1.ExportRequest, stream apiv1.Ckptd_ExportServer) error {
	_, err := s.d.Export(stream.Context(), r.GetCheckpoint(), chunkWriter{stream}, r.GetCompression())
	return toStatus(err)
}

// chunkWriter sends what is written as export chunks.
type chunkWriter struct{ stream apiv1.Ckptd_ExportServer }

func (w chunkWriter) Write(p []byte) (int, error) {
	for sent := 0; sent < len(p); {
		n := min(len(p)-sent, ChunkSize)
		if err := w.stream.Send(&apiv1.ExportChunk{Data: p[sent : sent+n]}); err != nil {
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

func (s *Server) Import(stream apiv1.Ckptd_ImportServer) error {
	first, err := stream.Recv()
	if err != nil {
		return toStatus(err)
	}
	r := &chunkReader{stream: stream, buf: first.GetData()}
	c, err := s.d.Import(stream.Context(), r, daemon.ImportOptions{
		Name: first.GetName(), Source: first.GetSource(), Digest: first.GetDigest(), Size: first.GetSize(),
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(checkpointToAPI(c))
}

// chunkReader reads the data of import chunks.
type chunkReader struct {
	stream apiv1.Ckptd_ImportServer
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		m, err := r.stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
		if why := m.GetAbort(); why != "" {
			return 0, fmt.Errorf("the client stopped sending: %s: %w", why, errdefs.ErrUnavailable)
		}
		r.buf = m.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
