package store

import (
	"context"
	"io"
	"sync"
	"time"
)

// pacer holds reads to a rate in bytes per second, over all readers that
// share it, so that a scrub leaves the disk to the work that matters.
type pacer struct {
	ctx   context.Context
	rate  int64
	mu    sync.Mutex
	start time.Time
	n     int64
}

func newPacer(ctx context.Context, rate int64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{ctx: ctx, rate: rate, start: time.Now()}
}

// reader paces r; a nil pacer does not.
func (p *pacer) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return pacedReader{r, p}
}

func (p *pacer) wait(n int) error {
	p.mu.Lock()
	p.n += int64(n)
	due := p.start.Add(time.Duration(float64(p.n) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	t := time.NewTimer(time.Until(due))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

type pacedReader struct {
	r io.Reader
	p *pacer
}

func (r pacedReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		if werr := r.p.wait(n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
