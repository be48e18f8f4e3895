package store

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// bucketSchedules holds the scheduler's policies and their status (the
// schedule package's JSON), by target key.
var bucketSchedules = []byte("schedules")

// PutSchedule stores a schedule record.
func (s *Store) PutSchedule(ctx context.Context, key string, v []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSchedules).Put([]byte(key), v) })
}

// Schedules returns every schedule record by target key.
func (s *Store) Schedules(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSchedules).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// DeleteSchedule removes a schedule record; a missing one is no error.
func (s *Store) DeleteSchedule(ctx context.Context, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSchedules).Delete([]byte(key)) })
}
