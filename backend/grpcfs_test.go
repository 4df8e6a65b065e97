package backend_test

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance runs the suite against the gRPC filesystem with a real
// agent on loopback TCP.
func TestConformance(t *testing.T) {
	a := agenttest.Start(t, "")
	if err := os.Mkdir(a.Dir+"/user", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			root := "user/" + t.Name()[len("TestConformance/"):]
			if err := os.MkdirAll(a.Dir+"/"+root, 0o755); err != nil {
				t.Fatal(err)
			}
			return a.Fs(t, root)
		},
		AfterEach: func(t *testing.T) { a.WaitIdle(t, 10*time.Second) },
		Short:     testing.Short(),
	})
}

// TestConformanceOsFs runs the same suite against afero's OsFs: the
// reference the gRPC filesystem must match.
func TestConformanceOsFs(t *testing.T) {
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			return afero.NewBasePathFs(afero.NewOsFs(), t.TempDir())
		},
		Short:              testing.Short(),
		NoRelativeSymlinks: true,
	})
}

// TestExclusiveCreateRace: two exclusive creates of one name both open
// (the name is free), but only the first to commit wins; the second's
// Close reports that the file exists instead of replacing it.
func TestExclusiveCreateRace(t *testing.T) {
	a := agenttest.Start(t, "")
	fsys := a.Fs(t, "")
	f1, err := fsys.OpenFile("/x", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := fsys.OpenFile("/x", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f1.Write([]byte("first"))
	f2.Write([]byte("second"))
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second exclusive commit: %v, want ErrExist", err)
	}
	if got, _ := os.ReadFile(a.Dir + "/x"); string(got) != "first" {
		t.Fatalf("content %q, want the first upload's", got)
	}
	entries, _ := os.ReadDir(a.Dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only x", len(entries))
	}
	a.WaitIdle(t, 10*time.Second)
}

// TestChtimesOutOfRange: a time the wire cannot carry is refused with
// EINVAL instead of landing as another date (MFMT 99991231235959).
func TestChtimesOutOfRange(t *testing.T) {
	a := agenttest.Start(t, "")
	fsys := a.Fs(t, "")
	fstest.WriteFile(t, fsys, "/f", []byte("x"))
	before, _ := os.Stat(a.Dir + "/f")
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if err := fsys.Chtimes("/f", far, far); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Chtimes to year 9999: %v, want EINVAL", err)
	}
	if after, _ := os.Stat(a.Dir + "/f"); !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("mtime changed to %v", after.ModTime())
	}
	ok := time.Date(2200, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := fsys.Chtimes("/f", ok, ok); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(a.Dir + "/f"); !after.ModTime().Equal(ok) {
		t.Fatalf("mtime %v, want %v", after.ModTime(), ok)
	}
}
