package sftp_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// TestFIFOIsRefused: a named pipe in a user's tree (a dev tool in the
// container made it) lists and stats as what it is, but opening it, for
// reading or writing, is refused at once with a status instead of waiting
// for the pipe's other end, which would hold the session's agent stream
// for good; the session goes on. OpenSSH's sftp-server would wait (its
// open blocks); vsftpd refuses to send one, as here.
func TestFIFOIsRefused(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e, "alice")
	fi, err := c.Lstat("/pipe")
	if err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
		t.Fatalf("lstat of the pipe: %v, %v; want a named pipe", fi, err)
	}
	for _, tc := range []struct {
		name string
		flag int
	}{{"read", os.O_RDONLY}, {"write in place", os.O_WRONLY}, {"append", os.O_WRONLY | os.O_APPEND}} {
		done := make(chan error, 1)
		go func() {
			f, err := c.OpenFile("/pipe", tc.flag)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			// (The client's cleanup ends the call.)
			t.Fatalf("open of the pipe for %s: no answer in 20 s: it waits for the pipe's other end", tc.name)
		}
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			t.Errorf("open of the pipe for %s: %v, want SSH_FX_OP_UNSUPPORTED", tc.name, err)
		}
		t.Logf("open for %s: %v", tc.name, err)
	}
	// The session goes on, and nothing opened the pipe's other end.
	f, err := c.Create("/after.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "after.txt")); err != nil || string(got) != "still here\n" {
		t.Fatalf("upload after the refusals: %q, %v", got, err)
	}
	e.AgentIdle(t)
}
