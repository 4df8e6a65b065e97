package differential_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// phpseclibAutoload is where Debian's php-phpseclib3 installs phpseclib 3.
const phpseclibAutoload = "/usr/share/php/phpseclib3/autoload.php"

// phpseclibSide is one server that testdata/phpseclib.php talks to.
type phpseclibSide struct {
	*sftpSide
	addr, password string
}

// runPhpseclib runs testdata/phpseclib.php against s: its steps'
// answers, and the server's tree.
func runPhpseclib(t *testing.T, s *phpseclibSide) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	php := gwtest.RequireTool(t, "php")
	if _, err := os.Stat(phpseclibAutoload); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("phpseclib 3 is required (UPGATE_REQUIRE_INTEROP=1): %v", err)
		}
		t.Skipf("phpseclib 3 not installed (Debian's php-phpseclib3): %v", err)
	}
	script, err := filepath.Abs("testdata/phpseclib.php")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, script, portOf(t, s.addr), s.user, s.password, s.prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: php %s: %v\n%s%s", s.name, script, err, out, stderr.Bytes())
	}
	var res []stepResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line struct {
			Step   string          `json:"step"`
			Result json.RawMessage `json:"result"`
			Status string          `json:"status"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: php printed %q: %v", s.name, sc.Text(), err)
		}
		res = append(res, stepResult{step: line.Step, answer: fmt.Sprintf("%s %s", line.Result, line.Status)})
	}
	if s.idle != nil {
		s.idle()
	}
	return res, snapshot(t, s.dir)
}

// TestPhpseclibDifferential runs what PHP code does over SFTP with
// phpseclib 3 (Flysystem's SFTP adapter, deployment scripts) against
// OpenSSH's sftp-server and upgate, and compares every step's answer and
// the trees. phpseclib picks the argument order of SSH_FXP_SYMLINK by the
// server's name (serverVersion), so its links are made the right way
// round only if upgate is named as OpenSSH.
func TestPhpseclibDifferential(t *testing.T) {
	srv := refserver.StartOpenSSH(t)
	ref := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	ref.user, ref.prefix, ref.dir = srv.User, srv.Dir, srv.Dir
	ugSFTP, u, _ := startUpgateSFTP(t)
	ugSFTP.idle = func() { u.AgentIdle(t) }
	refRes, refTree := runPhpseclib(t, &phpseclibSide{sftpSide: ref, addr: srv.Addr, password: srv.Password})
	ugRes, ugTree := runPhpseclib(t, &phpseclibSide{sftpSide: ugSFTP, addr: u.Srv.SFTPAddr.String(), password: gwtest.Users["alice"]})
	if len(refRes) != len(ugRes) {
		t.Fatalf("openssh ran %d steps, upgate %d", len(refRes), len(ugRes))
	}
	compareWithUpgate(t, "phpseclib", "openssh", refRes, refTree, ugRes, ugTree)
}
