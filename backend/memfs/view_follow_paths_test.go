package memfs_test

import (
	"os"
	"testing"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// TestViewFollowPaths: the handles of an upload superseded twice (its own,
// one that followed, an append opened into it) all write the newest
// upload's data, follow it when the session renames the path, and the
// newest upload's close commits what they wrote, at the new name.
func TestViewFollowPaths(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	fd3, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	n1, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	app, err := v.OpenFile("/f", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd3.WriteAt([]byte("A"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.WriteAt([]byte("B"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Write([]byte("C")); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename("/f", "/g"); err != nil {
		t.Fatal(err)
	}
	if _, err := fd3.WriteAt([]byte("D"), 3); err != nil {
		t.Fatal(err)
	}
	if got := read(t, v, "/g"); got != "ABCD" {
		t.Errorf("/g in session: %q", got)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, m, "/g"); got != "ABCD" {
		t.Errorf("/g committed: %q", got)
	}
	for _, f := range []interface{ Close() error }{fd3, n1, app} {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if _, err := m.Stat("/f"); err == nil {
		t.Errorf("/f exists")
	}
}
