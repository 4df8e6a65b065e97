package differential_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// runNetSCP runs testdata/netscp.rb against s: its steps' answers, and
// the server's tree.
func runNetSCP(t *testing.T, s *phpseclibSide) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	ruby := gwtest.RequireTool(t, "ruby")
	script, err := filepath.Abs("testdata/netscp.rb")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ruby, script, portOf(t, s.addr), s.user, s.password, s.prefix, t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: ruby %s: %v\n%s%s", s.name, script, err, out, stderr.Bytes())
	}
	var res []stepResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Step   string          `json:"step"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: ruby printed %q: %v", s.name, sc.Text(), err)
		}
		res = append(res, stepResult{step: line.Step, answer: string(line.Result)})
	}
	if s.idle != nil {
		s.idle()
	}
	return res, snapshot(t, s.dir)
}

// TestNetSCPDifferential runs what Ruby deployment code (Capistrano's
// upload! and download!) does with net-scp and net-sftp against OpenSSH's
// sshd and upgate, and compares every step's answer and the trees.
func TestNetSCPDifferential(t *testing.T) {
	srv := refserver.StartOpenSSH(t)
	ref := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	ref.user, ref.prefix, ref.dir = srv.User, srv.Dir, srv.Dir
	ugSFTP, u, _ := startUpgateSFTP(t)
	ugSFTP.idle = func() { u.AgentIdle(t) }
	refRes, refTree := runNetSCP(t, &phpseclibSide{sftpSide: ref, addr: srv.Addr, password: srv.Password})
	ugRes, ugTree := runNetSCP(t, &phpseclibSide{sftpSide: ugSFTP, addr: u.Srv.SFTPAddr.String(), password: gwtest.Users["alice"]})
	if len(refRes) != len(ugRes) {
		t.Fatalf("openssh ran %d steps, upgate %d", len(refRes), len(ugRes))
	}
	compareWithUpgate(t, "netscp", "openssh", refRes, refTree, ugRes, ugTree)
}
