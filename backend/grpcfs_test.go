package backend_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/spf13/afero"
	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend"
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

// oddReader returns data in reads of varying, odd sizes, as a socket does.
type oddReader struct {
	data []byte
	i    int
}

func (r *oddReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.i++
	n := min(len(p), len(r.data), 1+(r.i*7919)%200_000)
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestReadFrom: io.Copy into a gRPC file (an FTP upload) goes through
// ReadFrom, after and before ordinary writes, and lands byte for byte,
// across message boundaries.
func TestReadFrom(t *testing.T) {
	a := agenttest.Start(t, "")
	g := a.Fs(t, "")
	head := []byte("head:")
	body := fstest.Data(5<<20+12345, 3)
	tail := []byte(":tail")
	f, err := g.OpenFile("/up.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(io.ReaderFrom); !ok {
		t.Fatal("the gRPC file does not implement io.ReaderFrom")
	}
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, &oddReader{data: body})
	if err != nil || n != int64(len(body)) {
		t.Fatalf("io.Copy: %d, %v", n, err)
	}
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(a.Dir, "up.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, head...), body...), tail...)
	if !bytes.Equal(got, want) {
		t.Fatalf("file: %d bytes sha256 %x, want %d bytes %x", len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}

	// A reader that fails mid-way: the error comes back, and the upload,
	// aborted as FTP does on a data-connection failure, leaves nothing.
	f, err = g.OpenFile("/broken.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection reset")
	// (struct{ io.Reader } hides MultiReader's WriteTo, which io.Copy would
	// prefer to ReadFrom.)
	_, err = io.Copy(f, struct{ io.Reader }{io.MultiReader(&oddReader{data: body[:3<<20]}, iotest.ErrReader(boom))})
	if !errors.Is(err, boom) {
		t.Fatalf("io.Copy from a failing reader: %v", err)
	}
	f.(backend.TransferAborter).TransferError(err)
	if err := f.Close(); err == nil {
		t.Fatal("Close after a failed copy and TransferError committed")
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "broken.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("broken.bin: %v", err)
	}
	a.WaitIdle(t, 10*time.Second)
}

// TestUploadOverGRPCAllocates: an upload through a real agent on loopback
// gRPC does not allocate its size on the way: the gateway marshals into
// pooled buffers, and the agent decodes each write's data into a pooled
// buffer that goes back to the pool once written (agentpb.Codec,
// RecycleWrite). Before, the agent allocated every message afresh (152
// MiB for this upload, against 28 MiB now). Both ends run in this process,
// so the bound, half the upload, covers both. Under the race detector
// only the content is checked: its pools drop some of what they are
// given, and it allocates more itself (291 MiB here); .ci/run runs it once
// more without -race.
func TestUploadOverGRPCAllocates(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 128 MiB")
	}
	a := agenttest.Start(t, "")
	g := a.Fs(t, "")
	const size = 128 << 20
	data := fstest.Data(size, 5)
	f, err := g.Create("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := io.Copy(f, &oddReader{data: data})
	if err == nil {
		err = f.Close()
	}
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("upload: %d bytes, %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(a.Dir, "big.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("committed %d bytes (%v), not what was sent", len(got), err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; !raceEnabled && alloc > size/2 {
		t.Fatalf("the upload of %d MiB allocated %d MiB", size>>20, alloc>>20)
	}
}
