package store

import (
	"context"
	"fmt"
	"time"

	"github.com/ckptd/ckptd/errdefs"
)

// ScrubResult says what one scrub pass did.
type ScrubResult struct {
	Checked     int      // checkpoints read whole
	Skipped     int      // sealing, or in use and found damaged: left for the next pass
	Quarantined []string // ids
	Bytes       int64
}

// Scrub reads every sealed checkpoint at no more than rate bytes per
// second (0: unbounded), oldest first, and quarantines those it proves
// damaged. A checkpoint in use by others is read but left in place if
// damaged (a restore of it refuses it anyway); a cancelled ctx ends the
// pass.
func (s *Store) Scrub(ctx context.Context, rate int64) (ScrubResult, error) {
	var res ScrubResult
	all, err := s.List(ctx, Filter{})
	if err != nil {
		return res, err
	}
	pace := newPacer(ctx, rate)
	for _, c := range all {
		if c.IsSealing() {
			res.Skipped++
			continue
		}
		q, err := s.scrubOne(ctx, c.ID, pace)
		switch {
		case ctx.Err() != nil:
			return res, ctx.Err()
		case errdefs.IsNotFound(err):
			continue // removed meanwhile
		case err != nil:
			return res, err
		}
		res.Checked++
		res.Bytes += c.Size()
		if q {
			res.Quarantined = append(res.Quarantined, c.ID)
		}
	}
	return res, nil
}

// scrubOne verifies one checkpoint, held against rm, with one reader so
// that the rate, not the cores, bounds the pass.
func (s *Store) scrubOne(ctx context.Context, id string, pace *pacer) (quarantined bool, err error) {
	c, release, err := s.Acquire(ctx, id)
	if err != nil {
		return false, err
	}
	defer release()
	verr := verifyFiles(ctx, s.layout.Checkpoint(c.ID), c, hashOptions{workers: 1, pace: pace})
	switch {
	case verr == nil || ctx.Err() != nil:
		return false, nil
	case !errdefs.IsDataLoss(verr):
		s.log.Warn("scrub could not verify checkpoint; left as it is", "id", c.ID, "name", c.Name, "err", verr)
		return false, nil
	}
	s.mu.Lock() // against Acquire: nobody takes it up while it moves
	defer s.mu.Unlock()
	if s.busy[c.ID] > 1 {
		s.log.Error("scrub found checkpoint damaged; it is in use, so it stays until the next pass", "id", c.ID, "name", c.Name, "err", verr)
		return false, nil
	}
	s.log.Error("scrub found checkpoint damaged; moved to quarantine", "id", c.ID, "name", c.Name,
		"err", verr, "quarantine", s.layout.Quarantine(c.ID))
	if err := s.quarantine(c.ID, verr.Error()); err != nil {
		return false, fmt.Errorf("scrub %s: %w", c.ID, err)
	}
	return true, s.unindex(c)
}

// ScrubEvery runs a scrub pass every interval at rate bytes per second,
// until the store closes, logs what each pass did and hands it to report.
func (s *Store) ScrubEvery(interval time.Duration, rate int64, report func(ScrubResult)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.bgCtx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			res, err := s.Scrub(s.bgCtx, rate)
			if err != nil && s.bgCtx.Err() == nil {
				s.log.Error("scrub", "err", err)
				continue
			}
			s.log.Info("scrub pass done", "checked", res.Checked, "skipped", res.Skipped,
				"quarantined", len(res.Quarantined), "bytes", res.Bytes, "took", time.Since(start))
			report(res)
		}
	}()
}
