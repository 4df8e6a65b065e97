package gateway_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/backend"
)

// A read-only mount refuses every write: a mode or times set through the
// handle of a file or a directory opened on it too, which fchmod(2) and
// futimens(2) of a descriptor open for reading would set (a review found
// both set, the directory's since its handle took them).
func TestReadOnlyMountHandles(t *testing.T) {
	e := setup(t)
	if err := os.MkdirAll(filepath.Join(e.root, "alice", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "alice", "ro.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := e.gw.LoginPassword(context.Background(), nil, "dave", "pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/d", "/ro.txt"} {
		f, err := l.Fs.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.(backend.ModeSetter).Chmod(0o700); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: a mode set through its handle on a read-only mount: %v, want EROFS", p, err)
		}
		if err := f.(backend.TimesSetter).SetTimes(time.Time{}, time.Unix(1e9, 0)); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: times set through its handle on a read-only mount: %v, want EROFS", p, err)
		}
		f.Close()
		fi, _ := os.Stat(filepath.Join(e.root, "alice", p))
		if fi.Mode().Perm() == 0o700 || fi.ModTime().Equal(time.Unix(1e9, 0)) {
			t.Errorf("%s on a read-only mount changed through its handle: %v %v", p, fi.Mode(), fi.ModTime())
		}
	}
}
