package network

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ckptd/ckptd/proc"
)

// ownedExec runs the CNI plugins as children whose exit their starter
// waits for (proc.StartGroup). ckptd is a child subreaper and reaps the
// zombies of children nobody waits for; with libcni's own exec it could
// take a plugin's exit status first, and the attach or detach would fail
// with "waitid: no child processes".
type ownedExec struct {
	invoke.DefaultExec
}

func newOwnedExec() *ownedExec {
	return &ownedExec{invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}}}
}

// ExecPlugin runs the plugin with stdinData and environ, and returns its
// output; its error, when it fails, is the one it printed.
func (e *ownedExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(pluginPath)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = environ, bytes.NewReader(stdinData), &stdout, &stderr
	if err := proc.StartGroup(cmd); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	stop := context.AfterFunc(ctx, func() { proc.KillGroup(pid) })
	err := cmd.Wait()
	stop()
	proc.Disown(pid)
	if err != nil {
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// pluginError is what a failed plugin said: CNI's error object on its
// output, else its standard error.
func pluginError(err error, stdout, stderr []byte) error {
	var e types.Error
	if json.Unmarshal(stdout, &e) == nil && (e.Msg != "" || e.Details != "") {
		return &e
	}
	if s := bytes.TrimSpace(stderr); len(s) > 0 {
		return fmt.Errorf("%w: %s", err, s)
	}
	return err
}
