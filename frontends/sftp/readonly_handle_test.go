package sftp_test

import (
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
