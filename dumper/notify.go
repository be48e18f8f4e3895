package dumper

import gocriu "github.com/checkpoint-restore/go-criu/v8"

// notify answers CRIU's post-dump call by committing the checkpoint.
type notify struct {
	gocriu.NoNotify
	commit    func() error
	commitErr error
}

func (n *notify) PostDump() error {
	if n.commit == nil {
		return nil
	}
	n.commitErr = n.commit()
	return n.commitErr
}
