package backend_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestDirHandleAttrs: a directory's handle reads and sets the directory
// it opened (backend.Fstat, ModeSetter, TimesSetter), renamed since and
// another made at its old name, as fstat(2), fchmod(2) and futimens(2)
// of a descriptor, through every layer a session's filesystem has (View
// over GRPCFs). An agent without FILE_FEATURE_LISTING_ATTRS cannot:
// each answers errors.ErrUnsupported, for the caller to go by path.
func TestDirHandleAttrs(t *testing.T) {
	eachAgentVersion(t, agentpb.FileFeature_FILE_FEATURE_LISTING_ATTRS, func(t *testing.T, a *agenttest.Agent, spy *spyStream, old bool) {
		v := backend.NewView(spy.fs(t, a))
		if err := os.Mkdir(filepath.Join(a.Dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := v.Open("/d")
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := v.Rename("/d", "/moved"); err != nil {
			t.Fatal(err)
		}
		if err := v.Mkdir("/d", 0o755); err != nil {
			t.Fatal(err)
		}
		mtime := time.Date(2004, 11, 9, 11, 33, 20, 0, time.UTC)
		chmodErr := d.(backend.ModeSetter).Chmod(0o700)
		timesErr := d.(backend.TimesSetter).SetTimes(time.Time{}, mtime)
		fi, statErr := backend.Fstat(d)
		if old {
			for what, err := range map[string]error{"Chmod": chmodErr, "SetTimes": timesErr, "Fstat": statErr} {
				if !errors.Is(err, errors.ErrUnsupported) {
					t.Errorf("%s of a directory's handle on an older agent: %v, want ErrUnsupported", what, err)
				}
			}
			return
		}
		for what, err := range map[string]error{"Chmod": chmodErr, "SetTimes": timesErr, "Fstat": statErr} {
			if err != nil {
				t.Fatalf("%s of a directory's handle: %v", what, err)
			}
		}
		if fi.Mode() != fs.ModeDir|0o700 || !fi.ModTime().Equal(mtime) || fi.Name() != "d" {
			t.Errorf("Fstat: %v %v %q; want drwx------ %v \"d\"", fi.Mode(), fi.ModTime(), fi.Name(), mtime)
		}
		for p, want := range map[string]fs.FileMode{"/moved": fs.ModeDir | 0o700, "/d": fs.ModeDir | 0o755} {
			if fi, err := v.Stat(p); err != nil || fi.Mode() != want {
				t.Errorf("%s: %v, %v; want %v", p, fi.Mode(), err, want)
			}
		}
		if fi, err := d.Stat(); err != nil || fi.Mode() != fs.ModeDir|0o755 {
			t.Errorf("Stat (what the open saw): %v, %v; want drwxr-xr-x", fi.Mode(), err)
		}
	})
}
