package backend_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// upload is an upload's open: what FTP's STOR sends.
const upload = os.O_WRONLY | os.O_CREATE | os.O_TRUNC

// TestPostedOpen: with Options.PostUploadOpens, an upload into the
// directory of the last successful upload opens without waiting for the
// agent (an agent announcing FILE_FEATURE_POSTED_OPEN), lands as any
// other, and is an upload in progress to its session at once (Pending,
// Reopen). Its open's failure is returned by Close, as the open's own
// error, and nothing is left; the next open waits again. Removing or
// renaming the directory through the filesystem ends the posting there,
// and without the option every open waits.
func TestPostedOpen(t *testing.T) {
	a := agenttest.Start(t, "")
	fsFor := func(post bool) *backend.GRPCFs {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return backend.NewGRPCFs(ctx, a.Conn, backend.Options{Agent: "test", PostUploadOpens: post})
	}
	g := fsFor(true)
	mustMkdir := func(name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(a.Dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// openFails checks that an upload's open of name fails at once with
	// ENOENT: it waited for the agent.
	openFails := func(fsys *backend.GRPCFs, name string) {
		t.Helper()
		f, err := fsys.OpenFile(name, upload, 0o644)
		if err == nil {
			f.Close()
			t.Fatalf("OpenFile(%s) in a missing directory: no error, want ENOENT from the open", name)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("OpenFile(%s) in a missing directory: %v, want ENOENT", name, err)
		}
	}

	openFails(g, "/d/first.bin") // no upload there yet
	mustMkdir("d")
	first, second := fstest.Data(5000, 1), fstest.Data(300_000, 2)
	fstest.WriteFile(t, g, "/d/a.bin", first) // waits: the first upload in /d

	// Posted: an upload in progress to its session before the agent answered.
	f, err := g.OpenFile("/d/b.bin", upload, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := f.(backend.Upload)
	if !ok || !u.Pending() {
		t.Fatalf("posted open: %T, Upload %v, want a pending upload", f, ok)
	}
	if _, err := f.Write(second); err != nil {
		t.Fatal(err)
	}
	r, err := u.Reopen(os.O_RDONLY) // the upload's data, so far
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, second) {
		t.Fatalf("Reopen of the posted upload read %d bytes, %v; want its %d", len(got), err, len(second))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"d/a.bin": first, "d/b.bin": second} {
		if got, err := os.ReadFile(filepath.Join(a.Dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d", name, len(got), err, len(want))
		}
	}

	// The directory goes behind the session's back: the posted open
	// fails, Close says why, and nothing is left.
	if err := os.RemoveAll(filepath.Join(a.Dir, "d")); err != nil {
		t.Fatal(err)
	}
	f, err = g.OpenFile("/d/c.bin", upload, 0o644)
	if err != nil {
		t.Fatalf("upload into the last upload's directory: %v, want a posted open", err)
	}
	_, _ = f.Write(fstest.Data(200_000, 3)) // may already say why
	err = f.Close()
	var pe *fs.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Op != "open" || pe.Path != "/d/c.bin" {
		t.Errorf("Close of a posted open that failed: %v, want the open's ENOENT for /d/c.bin", err)
	}
	openFails(g, "/d/c.bin") // the failure ended the posting there
	if tmp := agenttest.TempFilesUnder(t, a.Dir); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}

	// Renaming the directory through the filesystem ends the posting there.
	mustMkdir("e")
	fstest.WriteFile(t, g, "/e/a.bin", first)
	if err := g.Rename("/e", "/e2"); err != nil {
		t.Fatal(err)
	}
	openFails(g, "/e/b.bin")
	// So does removing it, or one above it.
	mustMkdir("p/q")
	fstest.WriteFile(t, g, "/p/q/a.bin", first)
	if err := g.RemoveAll("/p"); err != nil {
		t.Fatal(err)
	}
	openFails(g, "/p/q/b.bin")

	// Without the option, every open waits.
	w := fsFor(false)
	mustMkdir("f")
	fstest.WriteFile(t, w, "/f/a.bin", first)
	if err := os.RemoveAll(filepath.Join(a.Dir, "f")); err != nil {
		t.Fatal(err)
	}
	openFails(w, "/f/b.bin")
	a.WaitIdle(t, 10*time.Second)
}
