package webdav

import (
	"context"
	"io/fs"
	"log/slog"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// A MOVE's X-OC-Mtime is set on what the move put at the destination,
// never through a symbolic link another session put there after the
// move (a review: Chtimes followed it, and set the link's target's time).
func TestMovedSetsNoTimeThroughALink(t *testing.T) {
	m := memfs.New(memfs.Options{})
	if err := afero.WriteFile(m, "/src", []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := afero.WriteFile(m, "/victim", []byte("v"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1600000000, 0)
	if err := m.Chtimes("/victim", old, old); err != nil {
		t.Fatal(err)
	}
	// Another session, between moved's Lstat and its setting the time.
	swap := func(memfs.Op, string) error {
		if err := m.Rename("/dst", "/elsewhere"); err != nil {
			t.Error(err)
		}
		if err := m.SymlinkIfPossible("/victim", "/dst"); err != nil {
			t.Error(err)
		}
		return nil
	}
	m.Inject(memfs.Fault{Op: memfs.OpChtimes, Path: "/dst", Func: swap, Nth: 1})
	m.Inject(memfs.Fault{Op: memfs.OpLchtimes, Path: "/dst", Func: swap, Nth: 1})
	q := &request{method: "MOVE", path: "/src", dst: "/dst", mtime: time.Unix(1000000000, 0)}
	f := &fileSystem{fs: m, log: slog.New(slog.DiscardHandler)}
	if err := f.Rename(context.WithValue(context.Background(), requestKey{}, q), "/src", "/dst"); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Stat("/victim"); err != nil || !v.ModTime().Equal(old) {
		t.Errorf("the link's target: %v, %v; want its mtime %v kept", v.ModTime(), err, old)
	}
	if l, err := backend.Lstat(m, "/dst"); err != nil || l.Mode().Type() != fs.ModeSymlink {
		t.Errorf("the destination after the swap: %v, %v; want the other session's link", l, err)
	}
}
