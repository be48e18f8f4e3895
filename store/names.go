package store

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// bucketNumbers keeps, per automatic name's base, the highest number a
// checkpoint named BASE-N ever had: numbers only grow, so a name freed by
// rm or retention is never handed to a newer checkpoint.
var bucketNumbers = []byte("numbers") // base -> highest N, decimal

// splitNumbered splits BASE-N into BASE and N.
func splitNumbered(name string) (string, uint64, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(name[i+1:], 10, 63)
	if err != nil {
		return "", 0, false
	}
	return name[:i], n, true
}

// noteNumberTx records name's number, if it has one, as its base's highest.
func noteNumberTx(tx *bolt.Tx, name string) error {
	base, n, ok := splitNumbered(name)
	if !ok || n <= recordedTx(tx, base) {
		return nil
	}
	return tx.Bucket(bucketNumbers).Put([]byte(base), []byte(strconv.FormatUint(n, 10)))
}

// highestTx is the highest number base has had: recorded, or held by a
// name in the index (a store from before the record).
func highestTx(tx *bolt.Tx, base string) uint64 {
	high := recordedTx(tx, base)
	prefix := []byte(base + "-")
	c := tx.Bucket(bucketNames).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if b, n, ok := splitNumbered(string(k)); ok && b == base && n > high {
			high = n
		}
	}
	return high
}

// NextName is BASE-N for the lowest N above every number base has had.
func (s *Store) NextName(ctx context.Context, base string) (string, error) {
	var name string
	err := s.db.View(func(tx *bolt.Tx) error {
		names := tx.Bucket(bucketNames)
		for n := highestTx(tx, base) + 1; ; n++ {
			name = base + "-" + strconv.FormatUint(n, 10)
			if names.Get([]byte(name)) == nil {
				return nil
			}
		}
	})
	return name, err
}

// recordedTx is the number recorded as base's highest, or 0.
func recordedTx(tx *bolt.Tx, base string) uint64 {
	n, _ := strconv.ParseUint(string(tx.Bucket(bucketNumbers).Get([]byte(base))), 10, 63)
	return n
}
