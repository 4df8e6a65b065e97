package backend_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestUploadMetAfterDirectories: a directory renamed onto the session's
// upload in progress answers ENOTDIR, and a hard link of that upload
// EBUSY, after the agent says that the directories involved may change
// (SessionRequest.may_change_in, one request per directory), as rename(2)
// and link(2) check the write bits before the kinds. An older agent is not
// asked, and the View answers the upload's own. The agent's user here is
// root, whom every directory lets change: the refusals (EACCES) are
// TestSearchOnlyDirectories' (the agent as nobody) and the differential's
// ("perm: upload /perm/rdu/u open, ...", against sftp-server).
func TestUploadMetAfterDirectories(t *testing.T) {
	eachAgentVersion(t, agentpb.FileFeature_FILE_FEATURE_MAY_CHANGE_IN, func(t *testing.T, a *agenttest.Agent, spy *spyStream, old bool) {
		v := backend.NewView(spy.fs(t, a))
		for _, d := range []string{"d", "sub"} {
			if err := os.Mkdir(filepath.Join(a.Dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		up, err := v.Create("/sub/up")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write([]byte("upload\n")); err != nil {
			t.Fatal(err)
		}
		count := func() int {
			return len(slices.DeleteFunc(spy.fileOps(), func(op string) bool { return op != "*agentpb.SessionRequest_MayChangeIn" }))
		}
		n0 := count()
		if err := v.Rename("/d", "/sub/up"); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("Rename(/d, /sub/up): %v, want ENOTDIR", err)
		}
		n1 := count()
		if err := v.Link("/sub/up", "/d/l"); !errors.Is(err, syscall.EBUSY) {
			t.Errorf("Link(/sub/up, /d/l): %v, want EBUSY", err)
		}
		n2 := count()
		want := [2]int{2, 1}
		if old {
			want = [2]int{0, 0}
		}
		if got := [2]int{n1 - n0, n2 - n1}; got != want {
			t.Errorf("may_change_in requests for the rename and the link: %v, want %v", got, want)
		}
		if err := up.Close(); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(a.Dir, "sub", "up")); err != nil || string(got) != "upload\n" {
			t.Errorf("the upload after the refusals: %q, %v", got, err)
		}
		for _, p := range []string{"d", "sub"} {
			if fi, err := os.Lstat(filepath.Join(a.Dir, p)); err != nil || !fi.IsDir() {
				t.Errorf("%s: %v, %v; want the directory where it was", p, fi, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(a.Dir, "d", "l")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("d/l: %v, want no link made", err)
		}
	})
}

// TestMayChangeInThroughWrappers: a read-only mount lets nothing change
// once the directory is found (EROFS, as faccessat(2) answers), a
// missing directory is the lookup's error, the directories a MountFs
// makes above its mount points are read-only, and a mount point, or what
// holds one, is busy. Over an agent that cannot tell, a read-only mount
// says so too (ErrUnsupported), so that the View keeps its own answer.
func TestMayChangeInThroughWrappers(t *testing.T) {
	a := agenttest.Start(t, "")
	if err := os.Mkdir(filepath.Join(a.Dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := backend.NewMountFs([]backend.Mount{
		{Path: "/rw", Fs: a.Fs(t, "")},
		{Path: "/top/ro", Fs: backend.ReadOnly(a.Fs(t, ""))},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want error // nil: allowed
	}{
		{"/rw/d/x", nil},
		{"/rw/x", nil},
		{"/rw/missing/x", syscall.ENOENT},
		{"/top/ro/d/x", syscall.EROFS},
		{"/top/ro/missing/x", syscall.ENOENT},
		{"/top/x", syscall.EROFS},
		{"/x", syscall.EROFS},
		{"/rw", syscall.EBUSY},
		{"/top", syscall.EBUSY},
		{"/top/ro", syscall.EBUSY},
	} {
		err := backend.MayChangeIn(m, c.name)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("MayChangeIn(%s): %v, want %v", c.name, err, c.want)
		}
	}
	spy := &spyStream{hide: agentpb.FileFeature_FILE_FEATURE_MAY_CHANGE_IN}
	if err := backend.MayChangeIn(backend.ReadOnly(spy.fs(t, a)), "/d/x"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("MayChangeIn of a read-only mount of an older agent: %v, want ErrUnsupported", err)
	}
	if err := backend.MayChangeIn(backend.NewView(a.Fs(t, "")), "/d/x"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("MayChangeIn of a View, which does not answer it itself: %v, want ErrUnsupported", err)
	}
}
