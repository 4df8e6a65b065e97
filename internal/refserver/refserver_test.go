package refserver_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/internal/refserver"
)

func TestMain(m *testing.M) {
	refserver.SetUmask()
	os.Exit(m.Run())
}

// TestOpenSSH logs in with the key and with the password, writes a file
// over SFTP, finds it in Dir owned by the user with mode 0644, and, after
// the server's subtest ends, finds the user and the server gone.
func TestOpenSSH(t *testing.T) {
	var s *refserver.OpenSSH
	t.Run("server", func(t *testing.T) {
		s = refserver.StartOpenSSH(t)
		for _, auth := range []ssh.AuthMethod{ssh.PublicKeys(s.Signer), ssh.Password(s.Password)} {
			cfg := s.ClientConfig()
			cfg.Auth = []ssh.AuthMethod{auth}
			conn, err := ssh.Dial("tcp", s.Addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			c, err := sftp.NewClient(conn)
			if err != nil {
				conn.Close()
				t.Fatal(err)
			}
			wd, err := c.Getwd()
			if err != nil || wd != s.Dir {
				t.Errorf("Getwd = %q, %v; want %q", wd, err, s.Dir)
			}
			f, err := c.Create("hello.txt")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("hello\n")); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			conn.Close()
		}
		checkFile(t, filepath.Join(s.Dir, "hello.txt"), "hello\n", 0o644, s.UID)
	})
	checkGone(t, s.User, s.Config)
}

// TestVSFTPD logs in, uploads a file and lists it, and finds the user and
// the server gone after the subtest.
func TestVSFTPD(t *testing.T) {
	var s *refserver.VSFTPD
	t.Run("server", func(t *testing.T) {
		s = refserver.StartVSFTPD(t)
		c, err := ftp.Dial(s.Addr, ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		if err := c.Login(s.User, s.Password); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor("hello.txt", bytes.NewReader([]byte("hello\n"))); err != nil {
			t.Fatal(err)
		}
		names, err := c.NameList("/")
		if err != nil || len(names) != 1 {
			t.Errorf("NLST / = %q, %v", names, err)
		}
		wd, err := c.CurrentDir()
		if err != nil || wd != "/" {
			t.Errorf("PWD = %q, %v; want / (chroot)", wd, err)
		}
		checkFile(t, filepath.Join(s.Dir, "hello.txt"), "hello\n", 0o644, s.UID)
	})
	checkGone(t, s.User, s.Config)
}

// TestApacheDAV writes a file and a collection over WebDAV, finds them in
// Dir owned by the user (the file mode 0644), lists them with PROPFIND,
// and, after the server's subtest ends, finds the user and the server
// gone.
func TestApacheDAV(t *testing.T) {
	var s *refserver.ApacheDAV
	t.Run("server", func(t *testing.T) {
		s = refserver.StartApacheDAV(t)
		c := &http.Client{Timeout: 10 * time.Second}
		for _, r := range []struct {
			method, path, body string
			status             int
		}{
			{"PUT", "/hello.txt", "hello\n", http.StatusCreated},
			{"MKCOL", "/d", "", http.StatusCreated},
			{"PROPFIND", "/", "", http.StatusMultiStatus},
		} {
			req, err := http.NewRequest(r.method, s.URL+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Depth", "1")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.status {
				t.Fatalf("%s %s: %s, want %d\n%s", r.method, r.path, resp.Status, r.status, b)
			}
			if r.method == "PROPFIND" && (!bytes.Contains(b, []byte("/hello.txt<")) || !bytes.Contains(b, []byte("/d/<"))) {
				t.Errorf("PROPFIND / lacks hello.txt or d/:\n%s", b)
			}
		}
		checkFile(t, filepath.Join(s.Dir, "hello.txt"), "hello\n", 0o644, s.UID)
		if st, err := os.Stat(filepath.Join(s.Dir, "d")); err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != s.UID {
			t.Errorf("d: %v, want a directory of the user %d", err, s.UID)
		}
	})
	if s != nil {
		checkGone(t, s.User, s.Config)
	}
}

func checkFile(t *testing.T, p, content string, mode os.FileMode, uid int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != content {
		t.Fatalf("%s = %q, %v; want %q", p, b, err, content)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != mode {
		t.Errorf("%s mode %v, want %v", p, st.Mode(), mode)
	}
	if got := int(st.Sys().(*syscall.Stat_t).Uid); got != uid {
		t.Errorf("%s owner %d, want the user %d", p, got, uid)
	}
}

// checkGone: the cleanup removed the user, its processes and the files.
func checkGone(t *testing.T, name, dir string) {
	t.Helper()
	if name == "" {
		return // skipped
	}
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("user %s still exists", name)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists (%v)", dir, err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("process %s still runs: %q", e.Name(), b)
		}
	}
}
