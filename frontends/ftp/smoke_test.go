package ftp_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/internal/gwtest"
)

// dial logs in as user over plain FTP with jlaffaye/ftp.
func dial(t testing.TB, e *env, user string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(e.Addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, gwtest.Users[user]); err != nil {
		c.Quit()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	return c
}

func TestStoreAndRetrieve(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	data := bytes.Repeat([]byte("upgate "), 100000)
	if err := c.Stor("app.php", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(e.UserDir("alice"), "app.php"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file in the agent: %d bytes, %v", len(got), err)
	}
	fi, _ := os.Stat(filepath.Join(e.UserDir("alice"), "app.php"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	r, err := c.Retr("app.php")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("RETR: %d bytes, %v", len(back), err)
	}
	e.AgentIdle(t)
}
