package backend_test

import (
	"os"
	"sync"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// A REMOVE of a path the session still has a writer at, or a rename onto
// it, and a new upload of that path that the session opens while the
// removal or the rename runs (SFTP serves the requests of its channels
// concurrently): the operation drops the writers that were at the path,
// and only those; the new upload is none of them, and commits. The View
// dropped every writer at the path after the operation (a REMOVE refused
// leaves them: seed 4372), and so unlinked an upload opened meanwhile,
// answered OK at every step (a review; the rename the same). The writer
// here is an abandoned handle that followed a second save of the path
// (rclone's FsPutError), which leaves a new save atomic.
func TestViewDropThenUploadRace(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   memfs.Op
		act  func(v *backend.View) error
	}{
		{"remove", memfs.OpRemove, func(v *backend.View) error { return v.Remove("/f") }},
		{"rename onto", memfs.OpRename, func(v *backend.View) error { return v.Rename("/src", "/f") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			if _, err := second.Write([]byte("second")); err != nil {
				t.Fatal(err)
			}
			if err := second.Close(); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			var up afero.File
			var openErr error
			m.Inject(memfs.Fault{Op: tc.op, Path: "/f", Func: func(memfs.Op, string) error {
				once.Do(func() {
					// Another request of the session: a new upload of /f.
					up, openErr = v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				})
				return nil
			}})
			if err := tc.act(v); err != nil {
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
		})
	}
}
