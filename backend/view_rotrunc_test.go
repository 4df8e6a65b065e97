package backend_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestViewTruncatingOpenReaderCatchesUp: a session reads a file (the
// backend reads ahead), and then truncates it by an open, writing or
// read-only (SFTP's OPEN with TRUNC and no WRITE truncates in place, as
// sftp-server's open(2) O_RDONLY|O_TRUNC does): the reader's next read
// is EOF, as sftp-server's pread after the truncation, not what it read
// ahead. The read-only open left the reader's read-ahead in place. (A
// review.)
func TestViewTruncatingOpenReaderCatchesUp(t *testing.T) {
	for _, flag := range []int{os.O_RDWR | os.O_TRUNC, os.O_RDONLY | os.O_TRUNC} {
		a := agenttest.Start(t, "")
		if err := os.WriteFile(filepath.Join(a.Dir, "f"), bytes.Repeat([]byte("x"), 3*backend.Chunk), 0o644); err != nil {
			t.Fatal(err)
		}
		v := backend.NewView(a.Fs(t, ""))
		w, err := v.OpenFile("/f", os.O_RDWR, 0) // a writer in place at the path
		if err != nil {
			t.Fatal(err)
		}
		r, err := v.Open("/f")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		if _, err := r.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		tf, err := v.OpenFile("/f", flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := tf.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := r.ReadAt(buf, 100); n != 0 || err != io.EOF {
			t.Errorf("open flags %#o: the reader's read after the truncating open: %d bytes, %v; want 0, EOF", flag, n, err)
		}
		r.Close()
		w.Close()
	}
}
