package sftp_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/upgate/upgate/config"
)

// A read-only mount refuses FSETSTAT of a mode through the handle of a
// file or of a directory opened with OPEN, as it refuses SETSTAT of their
// paths: fchmod(2) of a descriptor open for reading would set it (a
// review: both were set; times through a handle: TestReadOnlyMountHandles
// in gateway).
func TestReadOnlyMountDirFsetstat(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		for i := range cfg.Users {
			for j := range cfg.Users[i].Mounts {
				cfg.Users[i].Mounts[j].ReadOnly = true
			}
		}
	})
	dir := filepath.Join(e.UserDir("alice"), "d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.UserDir("alice"), "f"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e, "alice")
	for _, p := range []string{"/d", "/f"} {
		if err := c.Chmod(p, 0o700); err == nil {
			t.Fatalf("SETSTAT of %s on a read-only mount succeeded", p)
		}
		f, err := c.OpenFile(p, os.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Chmod(0o700); err == nil {
			t.Errorf("FSETSTAT of a mode through the handle of %s on a read-only mount succeeded", p)
		}
		f.Close()
		fi, err := os.Stat(filepath.Join(e.UserDir("alice"), p))
		if err != nil || fi.Mode().Perm() != 0o755 && fi.Mode().Perm() != 0o644 {
			t.Errorf("%s on a read-only mount is now %v (%v)", p, fi.Mode(), err)
		}
	}
}

// statvfs@openssh.com of the directory above a user's mounts answers a
// read-only file system with no blocks, not a failure (sshfs asks it of
// the mount's root for df and a file manager's free space), and of a
// read-only mount its agent's file system with ST_RDONLY, as sftp-server
// reports a file system mounted read-only.
func TestStatVFSAboveAndOnReadOnlyMounts(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		for i := range cfg.Users {
			m := cfg.Users[i].Mounts[0]
			site, logs := m, m
			site.Path, logs.Path, logs.ReadOnly = "/site", "/logs", true
			cfg.Users[i].Mounts = []config.Mount{site, logs}
		}
	})
	c := dial(t, e, "alice")
	const rdonly = 0x1 // SSH2_FXE_STATVFS_ST_RDONLY
	root, err := c.StatVFS("/")
	if err != nil || root.Flag&rdonly == 0 || root.Blocks != 0 || root.Bsize == 0 || root.Namemax == 0 {
		t.Fatalf("statvfs /: %+v, %v; want ST_RDONLY, no blocks, a block size and a longest name", root, err)
	}
	site, err := c.StatVFS("/site")
	if err != nil || site.Flag&rdonly != 0 || site.Blocks == 0 {
		t.Fatalf("statvfs /site: %+v, %v; want the agent's writable file system", site, err)
	}
	logs, err := c.StatVFS("/logs")
	if err != nil || logs.Flag&rdonly == 0 || logs.Blocks != site.Blocks {
		t.Fatalf("statvfs /logs (read-only): %+v, %v; want the agent's file system (%d blocks) with ST_RDONLY", logs, err, site.Blocks)
	}
	if _, err := c.StatVFS("/nowhere"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("statvfs /nowhere: %v, want no such file", err)
	}
}
