package agent_test

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

// TestMoveUploadOntoItsDirectory: the session's upload renamed onto a
// directory above it answers rename(2)'s ENOTEMPTY (lock_rename's trap,
// found before either directory's write bit or the kinds), not EISDIR nor,
// with that directory 0555, EACCES.
func TestMoveUploadOntoItsDirectory(t *testing.T) {
	a := startHooked(t, nil)
	if err := os.MkdirAll(filepath.Join(a.dir, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{})
	for _, to := range []string{"/d/e", "/d"} {
		f, err := fsys.OpenFile("/d/e/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		u, ok := f.(backend.Upload)
		if !ok {
			t.Fatalf("%T is no upload", f)
		}
		if err := u.Move(to); !errors.Is(err, syscall.ENOTEMPTY) {
			t.Errorf("upload /d/e/f moved onto %s: %v, want ENOTEMPTY", to, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
