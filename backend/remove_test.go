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

// TestRemoveKind: RemoveFile and RemoveDir remove only an entry of their
// kind, through every layer a session's filesystem has (View over
// GRPCFs); to an agent announcing FILE_FEATURE_REMOVE_KIND each is one
// request (the agent's unlinkat answers for the kind), to an older agent
// an Lstat and a Remove, with the same results.
func TestRemoveKind(t *testing.T) {
	eachAgentVersion(t, agentpb.FileFeature_FILE_FEATURE_REMOVE_KIND, func(t *testing.T, a *agenttest.Agent, spy *spyStream, old bool) {
		v := backend.NewView(spy.fs(t, a))
		for _, d := range []string{"d", "d2"} {
			if err := os.Mkdir(filepath.Join(a.Dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"f", "f2"} {
			if err := os.WriteFile(filepath.Join(a.Dir, f), []byte(f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("d", filepath.Join(a.Dir, "ld")); err != nil {
			t.Fatal(err)
		}
		// The session's upload in progress is a file to it.
		up, err := v.Create("/up")
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		wantErr := func(what string, err, want error) {
			t.Helper()
			if !errors.Is(err, want) {
				t.Errorf("%s: %v, want %v", what, err, want)
			}
		}
		wantErr("RemoveFile(/d)", backend.RemoveFile(v, "/d"), syscall.EISDIR)
		wantErr("RemoveDir(/f)", backend.RemoveDir(v, "/f"), syscall.ENOTDIR)
		wantErr("RemoveDir(/ld)", backend.RemoveDir(v, "/ld"), syscall.ENOTDIR)
		wantErr("RemoveDir(/up)", backend.RemoveDir(v, "/up"), syscall.ENOTDIR)
		wantErr("RemoveFile(/missing)", backend.RemoveFile(v, "/missing"), fs.ErrNotExist)
		before := len(spy.fileOps())
		if err := backend.RemoveFile(v, "/f2"); err != nil {
			t.Fatal(err)
		}
		sent := spy.fileOps()[before:]
		want := []string{"*agentpb.SessionRequest_Remove"}
		if old {
			want = []string{"*agentpb.SessionRequest_Lstat", "*agentpb.SessionRequest_Remove"}
		}
		if !slices.Equal(sent, want) {
			t.Errorf("RemoveFile(/f2) sent %q, want %q", sent, want)
		}
		for _, step := range []struct {
			what string
			err  error
		}{
			{"RemoveFile(/ld)", backend.RemoveFile(v, "/ld")},
			{"RemoveDir(/d2)", backend.RemoveDir(v, "/d2")},
			{"RemoveFile(/up)", backend.RemoveFile(v, "/up")},
		} {
			if step.err != nil {
				t.Errorf("%s: %v", step.what, step.err)
			}
		}
		if _, err := v.Stat("/up"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the session's upload after RemoveFile: %v, want it gone", err)
		}
		for p, kept := range map[string]bool{"d": true, "f": true, "f2": false, "ld": false, "d2": false} {
			_, err := os.Lstat(filepath.Join(a.Dir, p))
			if kept != (err == nil) {
				t.Errorf("%s: Lstat %v, want kept %v", p, err, kept)
			}
		}
	})
}
