// Package fstest is the conformance suite every upgate filesystem runs: the
// gRPC filesystem against a real agent, and afero's OsFs as the reference,
// with the same expectations.
package fstest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// Config describes a filesystem under test.
type Config struct {
	// New returns an empty filesystem for one subtest.
	New func(t *testing.T) afero.Fs
	// AfterEach, if non-nil, runs after each subtest (to check that no
	// handle leaked, say).
	AfterEach func(t *testing.T)
	// Short skips the 64 MiB round trip.
	Short bool
	// NoRelativeSymlinks skips the symlink case for filesystems that
	// rewrite link targets (afero's BasePathFs stores host paths).
	NoRelativeSymlinks bool
}

// Run runs the suite.
func Run(t *testing.T, c Config) {
	cases := []struct {
		name string
		fn   func(t *testing.T, fsys afero.Fs)
	}{
		{"RoundTrip", func(t *testing.T, fsys afero.Fs) { testRoundTrip(t, fsys, c.Short) }},
		{"ConcurrentOutOfOrderWrites", testConcurrentWrites},
		{"ReadAtOffsets", testReadAt},
		{"SeekAndAppend", testSeekAppend},
		{"Truncate", testTruncate},
		{"RenameOverExisting", testRename},
		{"ModesAndTimes", testModesTimes},
		{"Listing", testListing},
		{"Errors", testErrors},
		{"MkdirAllRemoveAll", testMkdirAllRemoveAll},
		{"StatOpenFile", testStatOpenFile},
		{"Symlinks", func(t *testing.T, fsys afero.Fs) {
			if c.NoRelativeSymlinks {
				t.Skip("this filesystem rewrites symlink targets")
			}
			testSymlinks(t, fsys)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, c.New(t))
			if c.AfterEach != nil {
				c.AfterEach(t)
			}
		})
	}
}

// Data returns n deterministic pseudo-random bytes.
func Data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// WriteFile writes data in 32 KiB pieces, as io.Copy does for FTP.
func WriteFile(t testing.TB, fsys afero.Fs, name string, data []byte) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for off := 0; off < len(data); off += 32 << 10 {
		if _, err := f.Write(data[off:min(off+32<<10, len(data))]); err != nil {
			f.Close()
			t.Fatalf("write %s: %v", name, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

// Save is one IDE save as lftp mirror -R makes it: data written to name
// (created or truncated) in one write, then its mtime (and atime) set to
// mtime and its mode to 0644, each a separate operation. The benchmarks of
// a save (backend's and backend/agents') time it.
func Save(t testing.TB, fsys afero.Fs, name string, data []byte, mtime time.Time) {
	t.Helper()
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", name, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
	if err := fsys.Chtimes(name, mtime, mtime); err != nil {
		t.Fatalf("chtimes %s: %v", name, err)
	}
	if err := fsys.Chmod(name, 0o644); err != nil {
		t.Fatalf("chmod %s: %v", name, err)
	}
}

// ReadFile reads a whole file through Open and Read, in 32 KiB pieces as
// io.Copy reads for FTP, into a buffer sized by the open file's Stat (a
// growing bytes.Buffer made the 64 MiB round trip take half a minute under
// -race).
func ReadFile(t testing.TB, fsys afero.Fs, name string) []byte {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	const piece = 32 << 10
	b := make([]byte, 0, size+piece)
	for empty := 0; empty < 100; {
		if cap(b)-len(b) < piece {
			b = append(b, make([]byte, piece)...)[:len(b)]
		}
		n, err := f.Read(b[len(b) : len(b)+piece])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b
		}
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		if n == 0 {
			empty++
		} else {
			empty = 0
		}
	}
	t.Fatalf("read %s: 100 reads in a row returned nothing and no error", name)
	return nil
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

func testRoundTrip(t *testing.T, fsys afero.Fs, short bool) {
	sizes := []int{0, 1, 4 << 10, 1<<20 + 1, 64 << 20}
	if short {
		sizes = sizes[:4]
	}
	for i, n := range sizes {
		data := Data(n, uint64(i+1))
		name := "/rt" + string(rune('a'+i))
		WriteFile(t, fsys, name, data)
		fi, err := fsys.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(n) || !fi.Mode().IsRegular() {
			t.Fatalf("%s: size %d mode %v, want %d regular", name, fi.Size(), fi.Mode(), n)
		}
		if got := ReadFile(t, fsys, name); sum(got) != sum(data) {
			t.Fatalf("%s: %d bytes read back differ from the %d written", name, len(got), n)
		}
	}
}

func testConcurrentWrites(t *testing.T, fsys afero.Fs) {
	const size, piece = 8<<20 + 1234, 32 << 10
	data := Data(size, 7)
	f, err := fsys.OpenFile("/big", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := 0; off < size; off += piece {
		offs = append(offs, off)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range work {
				if _, err := f.WriteAt(data[off:min(off+piece, size)], int64(off)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, off := range offs {
		work <- off
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ReadFile(t, fsys, "/big"); sum(got) != sum(data) {
		t.Fatalf("out-of-order writes: read back %d bytes that differ", len(got))
	}
}

func testReadAt(t *testing.T, fsys afero.Fs) {
	const size = 3<<20 + 77
	data := Data(size, 3)
	WriteFile(t, fsys, "/r", data)
	f, err := fsys.Open("/r")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		off := r.IntN(size)
		n := r.IntN(200 << 10)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, int64(off))
		want := min(n, size-off)
		if got != want || !bytes.Equal(buf[:got], data[off:off+want]) {
			t.Fatalf("ReadAt(%d, %d) = %d bytes (want %d), equal=%v, err %v", n, off, got, want, bytes.Equal(buf[:got], data[off:off+got]), err)
		}
		if got < n && !errors.Is(err, io.EOF) {
			t.Fatalf("short ReadAt at %d without io.EOF: %v", off, err)
		}
	}
	// Concurrent, out of order, like pkg/sftp's workers.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := w * 32 << 10; off < size; off += 8 * 32 << 10 {
				buf := make([]byte, 32<<10)
				n, err := f.ReadAt(buf, int64(off))
				if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], data[off:off+n]) || n != min(32<<10, size-off) {
					errs <- errors.New("concurrent ReadAt mismatch")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n, err := f.ReadAt(make([]byte, 10), size); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func testSeekAppend(t *testing.T, fsys afero.Fs) {
	WriteFile(t, fsys, "/s", []byte("0123456789"))
	f, err := fsys.Open("/s")
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := f.Seek(4, io.SeekStart); err != nil || pos != 4 {
		t.Fatalf("seek: %d %v", pos, err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "456" {
		t.Fatalf("read after seek: %q %v", buf, err)
	}
	if pos, err := f.Seek(-2, io.SeekEnd); err != nil || pos != 8 {
		t.Fatalf("seek end: %d %v", pos, err)
	}
	f.Close()
	a, err := fsys.OpenFile("/s", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Resume: write into an existing file at an offset without truncating.
	r, err := fsys.OpenFile("/s", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt([]byte("XY"), 2); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(ReadFile(t, fsys, "/s")); got != "01XY456789abc" {
		t.Fatalf("after append and resume: %q", got)
	}
}

func testTruncate(t *testing.T, fsys afero.Fs) {
	WriteFile(t, fsys, "/t", Data(100000, 9))
	f, err := fsys.OpenFile("/t", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(10); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 10 {
		t.Fatalf("stat after truncate: %v %v", fi, err)
	}
	if _, err := f.WriteAt([]byte("z"), 19); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(Data(100000, 9)[:10], make([]byte, 9)...)
	want = append(want, 'z')
	if got := ReadFile(t, fsys, "/t"); !bytes.Equal(got, want) {
		t.Fatalf("truncate then write past the end: %q", got)
	}
}

func testRename(t *testing.T, fsys afero.Fs) {
	WriteFile(t, fsys, "/old", []byte("old content"))
	WriteFile(t, fsys, "/new", []byte("new content"))
	if err := fsys.Rename("/new", "/old"); err != nil {
		t.Fatalf("rename over an existing file: %v", err)
	}
	if got := string(ReadFile(t, fsys, "/old")); got != "new content" {
		t.Fatalf("after rename: %q", got)
	}
	if _, err := fsys.Stat("/new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("source still there after rename: %v", err)
	}
	if err := fsys.Mkdir("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Rename("/old", "/d/moved"); err != nil {
		t.Fatal(err)
	}
	if got := string(ReadFile(t, fsys, "/d/moved")); got != "new content" {
		t.Fatalf("after move: %q", got)
	}
	if err := fsys.Rename("/missing", "/x"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rename of a missing file: %v, want ErrNotExist", err)
	}
}

func testModesTimes(t *testing.T, fsys afero.Fs) {
	f, err := fsys.OpenFile("/m", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := fsys.Stat("/m"); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("created with 0640: %v %v", fi.Mode(), err)
	}
	if err := fsys.Chmod("/m", 0o600); err != nil {
		t.Fatal(err)
	}
	// Replacing a file keeps its mode.
	WriteFile(t, fsys, "/m", []byte("replaced"))
	if fi, err := fsys.Stat("/m"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after replace: %v %v, want 0600", fi.Mode(), err)
	}
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := fsys.Chtimes("/m", mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if fi, err := fsys.Stat("/m"); err != nil || !fi.ModTime().Equal(mtime) {
		t.Fatalf("mtime: %v %v, want %v", fi.ModTime(), err, mtime)
	}
	if err := fsys.Mkdir("/dir", 0o750); err != nil {
		t.Fatal(err)
	}
	if fi, err := fsys.Stat("/dir"); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("dir mode: %v %v", fi.Mode(), err)
	}
}

func testListing(t *testing.T, fsys afero.Fs) {
	for _, n := range []string{"/l/b", "/l/a", "/l/.hidden", "/l/with space", "/l/ünï"} {
		if err := fsys.MkdirAll("/l", 0o755); err != nil {
			t.Fatal(err)
		}
		WriteFile(t, fsys, n, []byte(n))
	}
	if err := fsys.Mkdir("/l/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := fsys.Open("/l")
	if err != nil {
		t.Fatal(err)
	}
	fis, err := d.Readdir(-1)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	got := map[string]string{}
	for _, fi := range fis {
		kind := "file"
		if fi.IsDir() {
			kind = "dir"
		}
		got[fi.Name()] = kind
		if !fi.IsDir() && fi.Size() != int64(len("/l/"+fi.Name())) {
			t.Errorf("%s: size %d", fi.Name(), fi.Size())
		}
	}
	want := map[string]string{"a": "file", "b": "file", ".hidden": "file", "with space": "file", "ünï": "file", "sub": "dir"}
	if len(got) != len(want) {
		t.Fatalf("listing %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("listing %v, want %v", got, want)
		}
	}
	// Paging with a count ends with io.EOF.
	d, err = fsys.Open("/l")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var names []string
	for range 10 {
		page, err := d.Readdirnames(4)
		names = append(names, page...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(names)
	if len(names) != len(want) {
		t.Fatalf("paged listing %v", names)
	}
}

func testErrors(t *testing.T, fsys afero.Fs) {
	if _, err := fsys.Open("/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open missing: %v, want ErrNotExist", err)
	}
	if _, err := fsys.Stat("/nope/deeper"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat missing: %v, want ErrNotExist", err)
	}
	if err := fsys.Mkdir("/e", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir("/e", 0o755); !errors.Is(err, os.ErrExist) {
		t.Errorf("mkdir existing: %v, want ErrExist", err)
	}
	WriteFile(t, fsys, "/e/f", []byte("f"))
	if err := fsys.Remove("/e"); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		t.Errorf("remove non-empty dir: %v, want ENOTEMPTY", err)
	}
	if _, err := fsys.OpenFile("/e/f", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, os.ErrExist) {
		t.Errorf("exclusive create of an existing file: %v, want ErrExist", err)
	}
	if _, err := fsys.OpenFile("/e", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("open a directory for writing: %v, want EISDIR", err)
	}
	if _, err := fsys.OpenFile("/missing/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("create in a missing directory: %v, want ErrNotExist", err)
	}
	if err := fsys.Remove("/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("remove missing: %v, want ErrNotExist", err)
	}
	if err := fsys.Mkdir("/e/f/sub", 0o755); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("mkdir under a file: %v, want ENOTDIR", err)
	}
	f, err := fsys.Open("/e/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Errorf("write to a read-only handle succeeded")
	}
	f.Close()
	if err := f.Close(); err == nil {
		t.Errorf("second close succeeded")
	}
	var pe *fs.PathError
	if _, err := fsys.Stat("/nope"); !errors.As(err, &pe) {
		t.Errorf("stat error %T is not a *fs.PathError", err)
	}
}

func testMkdirAllRemoveAll(t *testing.T, fsys afero.Fs) {
	if err := fsys.MkdirAll("/a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.MkdirAll("/a/b/c", 0o755); err != nil {
		t.Fatalf("MkdirAll of an existing tree: %v", err)
	}
	WriteFile(t, fsys, "/a/b/c/f", []byte("f"))
	if err := fsys.RemoveAll("/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Stat("/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after RemoveAll: %v", err)
	}
	if err := fsys.RemoveAll("/a"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
}

func testStatOpenFile(t *testing.T, fsys afero.Fs) {
	f, err := fsys.Create("/open")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(Data(300000, 1)); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 300000 || fi.Name() != "open" {
		t.Fatalf("stat of the open file: %v %v", fi, err)
	}
	// Read back through the same handle.
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 1000); err != nil || !bytes.Equal(buf, Data(300000, 1)[1000:1100]) {
		t.Fatalf("read back through the writing handle: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func testSymlinks(t *testing.T, fsys afero.Fs) {
	linker, ok1 := fsys.(afero.Linker)
	reader, ok2 := fsys.(afero.LinkReader)
	lstater, ok3 := fsys.(afero.Lstater)
	if !ok1 || !ok2 || !ok3 {
		t.Skip("no symlink support")
	}
	WriteFile(t, fsys, "/target", []byte("pointed at"))
	if err := fsys.Mkdir("/ln", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := linker.SymlinkIfPossible("../target", "/ln/rel"); err != nil {
		t.Fatal(err)
	}
	if got, err := reader.ReadlinkIfPossible("/ln/rel"); err != nil || got != "../target" {
		t.Fatalf("readlink: %q %v", got, err)
	}
	if got := string(ReadFile(t, fsys, "/ln/rel")); got != "pointed at" {
		t.Fatalf("read through link: %q", got)
	}
	fi, _, err := lstater.LstatIfPossible("/ln/rel")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("lstat of a link: %v %v", fi, err)
	}
	if fi, err := fsys.Stat("/ln/rel"); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("stat through a link: %v %v", fi, err)
	}
}

// Tree describes every entry under "/" of fsys, by path: a directory's
// mode, a file's mode, size, mtime and sha256, a link's target. Two trees
// compare equal exactly when nothing visible changed: an error-path test
// takes one before and one after a failed operation. It stops the test
// past 10,000 entries.
func Tree(t testing.TB, fsys afero.Fs) map[string]string {
	t.Helper()
	out := map[string]string{}
	todo := []string{"/"}
	for len(todo) > 0 {
		if len(out) > 10_000 {
			t.Fatalf("tree: more than 10,000 entries")
		}
		dir := todo[0]
		todo = todo[1:]
		d, err := fsys.Open(dir)
		if err != nil {
			t.Fatalf("tree: %v", err)
		}
		fis, err := d.Readdir(-1)
		d.Close()
		if err != nil {
			t.Fatalf("tree: %v", err)
		}
		for _, fi := range fis {
			p := path.Join(dir, fi.Name())
			if l, ok := fsys.(afero.Lstater); ok {
				if fi, _, err = l.LstatIfPossible(p); err != nil {
					t.Fatalf("tree: %v", err)
				}
			}
			switch {
			case fi.IsDir():
				out[p] = fmt.Sprintf("dir %v", fi.Mode())
				todo = append(todo, p)
			case fi.Mode()&fs.ModeSymlink != 0:
				target := "?"
				if r, ok := fsys.(afero.LinkReader); ok {
					target, _ = r.ReadlinkIfPossible(p)
				}
				out[p] = fmt.Sprintf("link %v -> %s", fi.Mode(), target)
			default:
				out[p] = fmt.Sprintf("file %v %d %s sha256:%x", fi.Mode(), fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano), sum(ReadFile(t, fsys, p)))
			}
		}
	}
	return out
}

// DiffTrees lists what differs between two Trees, one line per path, in
// path order; "" when they are equal.
func DiffTrees(before, after map[string]string) string {
	var paths []string
	for p := range before {
		paths = append(paths, p)
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		if before[p] != after[p] {
			fmt.Fprintf(&b, "%s: %q -> %q\n", p, before[p], after[p])
		}
	}
	return b.String()
}
