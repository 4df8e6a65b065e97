package backend_test

import (
	"os"
	"sync"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// A REMOVE of a path the session still has a writer at, and a new upload
// of that path that the session opens while the removal runs (SFTP serves
// the requests of its channels concurrently): the removal forgets the
// writers that were at the path, and only those; the new upload is none
// of them, and commits. The View forgot every writer at the path after
// the removal (a REMOVE refused leaves them: seed 4372), and so unlinked
// an upload opened meanwhile, answered OK at every step (a review). The
// writer here is an abandoned handle that followed a second save of the
// path (rclone's FsPutError), which leaves a new save atomic.
func TestViewRemoveThenUploadRace(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	first, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var up afero.File
	var openErr error
	m.Inject(memfs.Fault{Op: memfs.OpRemove, Path: "/f", Func: func(memfs.Op, string) error {
		once.Do(func() {
			// Another request of the session: a new upload of /f.
			up, openErr = v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		})
		return nil
	}})
	if err := v.Remove("/f"); err != nil {
		t.Fatal(err)
	}
	if openErr != nil {
		t.Fatal(openErr)
	}
	if _, err := up.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := afero.ReadFile(m, "/f"); string(got) != "new" {
		t.Errorf("/f after an upload answered OK at every step: %q, %v; want \"new\"", got, err)
	}
}

// The same for a rename onto the path: the writers at the path before
// the rename are dropped with what it replaced, not an upload another
// channel opened there while the rename ran.
func TestViewRenameThenUploadRace(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	if err := afero.WriteFile(m, "/src", []byte("src"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var up afero.File
	var openErr error
	m.Inject(memfs.Fault{Op: memfs.OpRename, Path: "/f", Func: func(memfs.Op, string) error {
		once.Do(func() {
			up, openErr = v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		})
		return nil
	}})
	if err := v.Rename("/src", "/f"); err != nil {
		t.Fatal(err)
	}
	if openErr != nil {
		t.Fatal(openErr)
	}
	if _, err := up.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := afero.ReadFile(m, "/f"); string(got) != "new" {
		t.Errorf("/f after an upload answered OK at every step: %q, %v; want \"new\"", got, err)
	}
}
