package backend_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestViewReaderCatchesUpWithWritersTakenAway: a reader and an appending
// writer share one file (the writer joined an upload that committed, the
// reader truncated the file at its open), and a rename onto its path, a
// REMOVE of it or a RemoveAll of its directory takes the path away. The
// writer's next write is held back (posted); the reader's Stat must come
// after it, as an FSTAT after a WRITE answered on sftp-server, where
// both descriptors hold the unlinked file. The View dropped the writer
// from the path and the reader pushed nothing (TestSFTPRandom seed
// 22647: the reader saw size 0). Twenty rounds each: without the fix
// nearly every one fails.
func TestViewReaderCatchesUpWithWritersTakenAway(t *testing.T) {
	a := agenttest.Start(t, "")
	v := backend.NewView(a.Fs(t, ""), backend.ReadersFollowSaves())
	for _, tc := range []struct {
		name string
		dir  string // the file's directory, made first
		take func(p string) error
	}{
		{"rename onto it", "/r", func(p string) error {
			if err := os.WriteFile(filepath.Join(a.Dir, "r", "other"), []byte("other"), 0o644); err != nil {
				return err
			}
			return v.Rename("/r/other", p)
		}},
		{"remove", "/m", v.Remove},
		{"remove its directory", "/a", func(p string) error { return v.RemoveAll(filepath.Dir(p)) }},
	} {
		for round := range 20 {
			if err := os.MkdirAll(filepath.Join(a.Dir, tc.dir), 0o755); err != nil {
				t.Fatal(err)
			}
			p := tc.dir + "/x"
			h0, err := v.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			h2, err := v.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if err := h0.Close(); err != nil {
				t.Fatalf("%s: close: %v", tc.name, err)
			}
			r, err := v.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatalf("%s: the reader: %v", tc.name, err)
			}
			if err := tc.take(p); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if _, err := h2.Write([]byte("L")); err != nil {
				t.Fatalf("%s: write: %v", tc.name, err)
			}
			fi, err := r.Stat()
			if err != nil {
				t.Fatalf("%s: stat: %v", tc.name, err)
			}
			if fi.Size() != 1 {
				t.Errorf("%s, round %d: the reader's stat after the write: size %d, want 1", tc.name, round, fi.Size())
			}
			h2.Close()
			r.Close()
			if err := os.RemoveAll(filepath.Join(a.Dir, tc.dir)); err != nil {
				t.Fatal(err)
			}
		}
	}
}
