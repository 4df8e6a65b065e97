package sftp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
)

// scpTree describes the tree under dir, for comparing what two servers
// made: each entry's path, kind, permission bits and content hash, and
// its mtime where that is not the time it was made.
func scpTree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if d := time.Since(fi.ModTime()); d > 10*time.Minute || d < -10*time.Minute {
			line += " mtime=" + fi.ModTime().UTC().Format(time.RFC3339) // a time a record set
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// runLocalSCP runs OpenSSH's own scp, as sshd runs it for a client, in
// dir with input as what the client sends: its answers and exit status.
func runLocalSCP(t *testing.T, scp, dir string, args []string, input string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, scp, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s %q: %v", scp, args, err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// TestSCPAgainstOpenSSH sends the same client bytes, well formed or not,
// to OpenSSH's scp (run here as sshd would run it: "scp -t DIR", "scp -f
// NAMES" in the home directory) and to upgate's, and compares the
// answers byte for byte, the exit statuses and the trees they leave.
// Both run as root on the same filesystem; the cases ask nothing of
// permissions.
func TestSCPAgainstOpenSSH(t *testing.T) {
	scp := gwtest.RequireTool(t, "scp")
	e := start(t, nil)
	home := e.UserDir("alice")
	c := sshClient(t, e, "alice")
	reset := func(dirs ...string) {
		for _, d := range dirs {
			ents, _ := os.ReadDir(d)
			for _, ent := range ents {
				if err := os.RemoveAll(filepath.Join(d, ent.Name())); err != nil {
					t.Fatal(err)
				}
			}
			mustWrite(t, filepath.Join(d, "isfile"), []byte("f"))
			if err := os.MkdirAll(filepath.Join(d, "isadir"), 0o755); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(d, "d", "a"), []byte("aa"))
			mustWrite(t, filepath.Join(d, "d", "e", "b"), []byte("b"))
			mustWrite(t, filepath.Join(d, "one"), []byte("1"))
		}
	}
	t.Run("sink", func(t *testing.T) {
		for i, tc := range []struct {
			args, input string
			// upgate's answer where it differs on purpose: a file whose
			// sender does not end it with a 0 byte is not written (its
			// tree is then not compared).
			upgate string
		}{
			{"-t", "C0644 5 a.txt\nhello\x00", ""},
			{"-t", "T1 0 2 0\nE\n", ""},
			{"-t", "C0644 1 x\nx\x05oops\n", "\x00\x00"},
			{"-t", "\x01scp: local: nope\nC0644 1 y\ny\x00", ""},
			{"-r -t", "D0755 0 dd\nZgarbage\n", ""},
			{"-r -t", "D0755 0 dd2\nT1 0 1 0\nE\nE\n", ""},
			{"-r -t", "D0555 0 ro\nC0644 1 in\ni\x00E\n", ""},
			{"-r -t", "D0555 0 ro2\nC0644 1 in\ni\x00", ""}, // the client gone inside a level
			{"-r -p -t", "T1000000000 0 1000000001 0\nD0750 0 tp\nT5 0 6 0\nC0640 1 f\nf\x00E\n", ""},
			{"-t", "C0644 2 z\nzz\x00C0644 0 z2\n\x00", ""},
			{"-t", "C0644 5 w\nhello\x01scp: w: short read\n", "\x00\x00\x01scp: ./w: not written: the sender reported an error\n"},
			{"-r -t", "D0755 0 isfile\n", ""},
			{"-t", "C0644 0 isadir\n", ""},
			{"-t", "T1 0 2 0\nT3 0 4 0\nC0644 1 t\nt\x00", ""},
			{"-t", "C0644 1 x y\nq\x00", ""},
			{"-t", "C10644 1 m\nq\x00", ""},
			{"-t", "C0644 01 m2\nq\x00", ""},
			{"-t", "C0644 1  sp\nq\x00", ""},
			{"-t", "C0644 1 \n", ""},
			{"-t", "C0644 1 nul\x00name\nq\x00", ""},
			{"-t", "E", ""},
			{"-t", "C0644 1 nonl", ""},
			{"-t", "D0755 0 noR\n", ""},
			{"-t", "T1 0 2 0", ""},
			{"-t", "T1 -0 2 0\n", ""},
			{"-t", "T1  +5 2 0\nC0644 1 ts\nq\x00", ""},
			{"-t", "T1 0 2 0 \n", ""},
			{"-t", "T 1 0 2 0\n", ""},
			{"-t", "T1\n", ""},
			{"-t", "T1 0 x 0\n", ""},
			{"-t", "T1 1000000 2 0\n", ""},
			{"-t", "T99999999999999999999 0 2 0\nC0644 1 big\nq\x00", ""},
			{"-t", "\x00junk\n", ""},
			{"-t", "\n", ""},
			{"-d -t", "", ""},
			{"-t isfile/.", "C0644 1 q\nq\x00", ""},
			{"-r -t isfile/..", "D0755 0 q\nE\n", ""},
			{"-t nodir/.", "C0644 1 q\nq\x00", ""},
			{"-t isadir/.", "C0644 1 q\nq\x00", ""},
			{"-t isadir/../d/./e", "C0644 1 q\nq\x00", ""},
			// libssh2's scp_send (curl's scp://, PHP's ssh2_scp_send)
			// ends its stream after the data, with no 0 byte.
			{"-t", "C0644 5 lib\nhello", ""},
			{"-t", "C0600 1 one\nZ", ""},
			{"-t", "C0644 0 empty\n", ""},
			{"-p -t", "T1000000000 0 1000000001 0\nC0600 5 libp\nhello", ""},
			{"-r -p -t", "D0750 0 ld\nC0640 2 f\nhi", ""},
		} {
			ref := t.TempDir()
			reset(ref, home)
			args := strings.Fields(tc.args)
			target := "."
			switch {
			case tc.args == "-d -t":
				target = "isfile"
			case !strings.HasSuffix(tc.args, "-t"): // the target is the last argument
				target, args = args[len(args)-1], args[:len(args)-1]
			}
			want, wantCode := runLocalSCP(t, scp, ref, append(args, target), tc.input)
			got, code := scpExec(t, c, "scp "+strings.Join(args, " ")+" "+target, []byte(tc.input))
			if tc.upgate != "" {
				if got != tc.upgate || code != wantCode {
					t.Errorf("%d: scp %s %s with %q:\n  upgate  %q exit %d\n  want    %q exit %d (OpenSSH: %q)", i, tc.args, target, tc.input, got, code, tc.upgate, wantCode, want)
				}
				continue
			}
			if got != want || code != wantCode {
				t.Errorf("%d: scp %s %s with %q:\n  OpenSSH %q exit %d\n  upgate  %q exit %d", i, tc.args, target, tc.input, want, wantCode, got, code)
			}
			if a, b := scpTree(t, ref), scpTree(t, home); a != b {
				t.Errorf("%d: scp %s with %q: trees differ:\nOpenSSH:\n%s\nupgate:\n%s", i, tc.args, tc.input, a, b)
			}
		}
	})
	t.Run("source", func(t *testing.T) {
		ref := t.TempDir()
		reset(ref, home)
		for i, tc := range []struct{ args, input string }{
			{"-f one one", "\x00\x00\x01scp: no\n\x00\x00"},
			{"-f one one", "\x00\x00\x02scp: stop\n\x00\x00"},
			{"-f one one", "\x00\x00\x05weird\n\x00\x00"},
			{"-f one one", "\x01scp: go\n\x00\x00\x00\x00"},
			{"-r -f d one", "\x00\x01scp: no dir\n\x00\x00"},
			{"-r -f d", "\x00\x00\x00\x00\x00\x00\x00\x01scp: no E\n"},
			{"-r -f d/ one//", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
			{"-f d one", "\x00\x00\x00"},
			{"-f", "\x00"},
			{"-f nosuch one", "\x00\x00\x00"},
			{"-f one", ""},
			{"-f isadir", "\x00"},
			{"-r -f isadir", "\x00\x00\x00"},
			{"-f isfile/.", "\x00"},
			{"-f isfile/../one", "\x00\x00\x00"},
			{"-f nodir/../one", "\x00\x00\x00"},
			{"-f d/./a d/e/../a", "\x00\x00\x00\x00\x00"},
		} {
			want, wantCode := runLocalSCP(t, scp, ref, strings.Fields(tc.args), tc.input)
			got, code := scpExec(t, c, "scp "+tc.args, []byte(tc.input))
			if got != want || code != wantCode {
				t.Errorf("%d: scp %s with %q:\n  OpenSSH %q exit %d\n  upgate  %q exit %d", i, tc.args, tc.input, want, wantCode, got, code)
			}
		}
	})
}
