package ftp_test

import (
	"crypto/sha256"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// startMem runs a gateway with FTP whose users' trees are in-memory
// filesystems (each user has one; alice's is returned), reached through
// the real login, session view and accounting: faults injected into it
// are what the disk behind an agent would answer.
func startMem(t testing.TB) (*env, *memfs.FS) {
	t.Helper()
	clk := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	trees := map[string]*memfs.FS{}
	for user := range gwtest.Users {
		trees[user] = memfs.New(memfs.Options{Now: func() time.Time { return clk }})
	}
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = ""
	}, func(user string) afero.Fs { return trees[user] })
	return &env{Env: e, Addr: e.Srv.FTPAddr.String()}, trees["alice"]
}

// agentDown is what the gRPC filesystem answers when the agent cannot be
// reached: a text naming the agent and the user, wrapping
// backend.ErrUnavailable.
type agentDown struct{}

func (agentDown) Error() string { return "agent web for user alice unreachable: connection refused" }
func (agentDown) Unwrap() error { return backend.ErrUnavailable }

// TestErrorPaths: what the filesystem answers reaches the client as the
// FTP reply that tells it what to do (code and text), and a failed upload
// changes nothing a listing or a download could see: each case injects
// one fault into alice's in-memory tree, runs the commands a client sends,
// and compares the whole tree (modes, sizes, mtimes, sha256) before and
// after.
func TestErrorPaths(t *testing.T) {
	e, m := startMem(t)
	old := []byte("<?php echo 'old';\n")
	if err := m.Mkdir("/site", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, m, "/site/index.php", old)
	upload := noise(t, 1<<20)

	cases := []struct {
		name  string
		fault memfs.Fault
		// run sends the commands on a logged-in control connection and
		// returns the reply to check.
		run      func(c *ftpCtl) (int, string)
		code     int
		text     string // the reply must contain it
		unchange bool   // the tree must not change
	}{
		{
			name:  "STOR, the disk fills up mid-upload",
			fault: memfs.Fault{Op: memfs.OpWrite, Path: "/site/index.php", Nth: 3, Err: syscall.ENOSPC},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/index.php") },
			code:  552, text: "no space left on device", unchange: true,
		},
		{
			name:  "STOR, the commit fails",
			fault: memfs.Fault{Op: memfs.OpClose, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/index.php") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "STOR of a new file, the commit fails",
			fault: memfs.Fault{Op: memfs.OpClose, Path: "/site/new.php", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/new.php") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "STOR, the disk is full at open",
			fault: memfs.Fault{Op: memfs.OpOpen, Path: "/site/*", Err: syscall.EDQUOT},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/index.php") },
			code:  552, text: "disk quota exceeded", unchange: true,
		},
		{
			name:  "STOR, the agent is unreachable",
			fault: memfs.Fault{Op: memfs.OpOpen, Err: agentDown{}},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/index.php") },
			code:  451, text: "agent web for user alice unreachable", unchange: true,
		},
		{
			name:  "STOR, too many open files",
			fault: memfs.Fault{Op: memfs.OpOpen, Err: syscall.EMFILE},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "STOR /site/index.php") },
			code:  451, text: "too many open files", unchange: true,
		},
		{
			name:  "APPE, the disk fills up",
			fault: memfs.Fault{Op: memfs.OpWrite, Path: "/site/index.php", Err: syscall.ENOSPC},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(upload, "APPE /site/index.php") },
			code:  552, text: "no space left on device", unchange: true,
		},
		{
			name:  "MKD, permission denied",
			fault: memfs.Fault{Op: memfs.OpMkdir, Path: "/site/cache", Err: syscall.EACCES},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("MKD /site/cache") },
			code:  550, text: "permission denied", unchange: true,
		},
		{
			name:  "LIST, the directory cannot be read",
			fault: memfs.Fault{Op: memfs.OpReaddir, Path: "/site", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(nil, "LIST /site") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "MLSD, the directory cannot be read",
			fault: memfs.Fault{Op: memfs.OpReaddir, Path: "/site", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(nil, "MLSD /site") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "RETR, a read fails",
			fault: memfs.Fault{Op: memfs.OpRead, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.tryTransfer(nil, "RETR /site/index.php") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "DELE, permission denied",
			fault: memfs.Fault{Op: memfs.OpRemove, Path: "/site/index.php", Err: syscall.EACCES},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("DELE /site/index.php") },
			code:  550, text: "permission denied", unchange: true,
		},
		{
			name:  "RNFR/RNTO across devices",
			fault: memfs.Fault{Op: memfs.OpRename, Path: "/site/index.php", Err: syscall.EXDEV},
			run: func(c *ftpCtl) (int, string) {
				c.must(350, "RNFR /site/index.php")
				return c.cmd("RNTO /site/moved.php")
			},
			code: 550, text: "cross-device link", unchange: true,
		},
		{
			name:  "MFMT, times refused",
			fault: memfs.Fault{Op: memfs.OpChtimes, Path: "/site/index.php", Err: syscall.EPERM},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("MFMT 20200102030405 /site/index.php") },
			code:  550, text: "operation not permitted", unchange: true,
		},
		{
			name:  "SITE CHMOD refused",
			fault: memfs.Fault{Op: memfs.OpChmod, Path: "/site/index.php", Err: syscall.EPERM},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("SITE CHMOD 600 /site/index.php") },
			code:  550, text: "operation not permitted", unchange: true,
		},
		{
			name:  "SIZE, stat fails",
			fault: memfs.Fault{Op: memfs.OpStat, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("SIZE /site/index.php") },
			code:  451, text: "input/output error", unchange: true,
		},
		{
			name:  "HASH, the checksum fails",
			fault: memfs.Fault{Op: memfs.OpHash, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(c *ftpCtl) (int, string) { return c.cmd("HASH /site/index.php") },
			code:  451, text: "input/output error", unchange: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fstest.Tree(t, m)
			in := m.Inject(tc.fault)
			c := ctlLogin(t, e, "alice")
			code, msg := tc.run(c)
			in.Remove()
			t.Logf("%d %s", code, msg)
			if code != tc.code || !strings.Contains(msg, tc.text) {
				t.Errorf("reply %d %q, want %d and %q", code, msg, tc.code, tc.text)
			}
			if in.Hits() == 0 {
				t.Errorf("the fault never fired: the reply comes from elsewhere")
			}
			if tc.unchange {
				if d := fstest.DiffTrees(before, fstest.Tree(t, m)); d != "" {
					t.Errorf("the failed command changed the tree:\n%s", d)
				}
			}
			// The session goes on.
			c.must(200, "NOOP")
			c.must(213, "SIZE /site/index.php")
		})
	}
	if got := fstest.ReadFile(t, m, "/site/index.php"); string(got) != string(old) {
		t.Fatalf("index.php after every failure: %q", got)
	}
	// With no fault in force the same upload lands whole.
	c := ctlLogin(t, e, "alice")
	c.put(upload, "STOR /site/index.php")
	if got := fstest.ReadFile(t, m, "/site/index.php"); sha256.Sum256(got) != sha256.Sum256(upload) {
		t.Fatalf("index.php after a clean STOR: %d bytes, sha256 %x; want %d bytes %x", len(got), sha256.Sum256(got), len(upload), sha256.Sum256(upload))
	}
}
