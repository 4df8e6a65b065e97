package backend_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/internal/agenttest"
)

// agentWith starts an agent whose root holds name with data, and returns
// it with a filesystem on it.
func agentWith(t *testing.T, name string, data []byte) (*agenttest.Agent, afero.Fs) {
	t.Helper()
	a := agenttest.Start(t, "")
	if err := os.WriteFile(a.Dir+"/"+name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return a, a.Fs(t, "")
}

// open opens name on fsys for reading, closed at the test's end.
func open(t *testing.T, fsys afero.Fs, name string) afero.File {
	t.Helper()
	f, err := fsys.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestReadAheadSeesChanges: a handle kept open answers a read again, or a
// read at its old end, with what the file holds now, as sftp-server's
// pread does; the container rewrote it in place (same inode) between the
// reads.
func TestReadAheadSeesChanges(t *testing.T) {
	a, fsys := agentWith(t, "log", []byte("0123456789"))
	f := open(t, fsys, "/log")
	readAt := func(off int64, n int) string {
		t.Helper()
		p := make([]byte, n)
		got, err := f.ReadAt(p, off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
		return string(p[:got])
	}
	if got := readAt(0, 5); got != "01234" {
		t.Fatalf("first read %q", got)
	}
	// Bytes not read yet come from the block read ahead: they are what
	// the file held when the block was asked for.
	if got := readAt(5, 100); got != "56789" {
		t.Fatalf("rest %q", got)
	}
	w, err := os.OpenFile(a.Dir+"/log", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("MORE"); err != nil {
		t.Fatal(err)
	}
	if got := readAt(10, 100); got != "MORE" {
		t.Fatalf("read at the old end after an append: %q, want MORE", got)
	}
	w.Close()
	if err := os.WriteFile(a.Dir+"/log", []byte("ZZ23456789MORE+"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readAt(0, 100); got != "ZZ23456789MORE+" {
		t.Fatalf("read again from 0: %q", got)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 15 {
		t.Fatalf("Stat: %v, %v", fi, err)
	}
}

// TestReadAheadStillReadsAhead: a reader that takes each byte once, in
// order or in pipelined requests served out of order, is answered from the
// blocks read ahead: one fetch per block, plus one to confirm the end.
func TestReadAheadStillReadsAhead(t *testing.T) {
	want := make([]byte, 3*backend.Chunk+12345)
	for i := range want {
		want[i] = byte(i * 7)
	}
	_, fsys := agentWith(t, "big", want)
	blocks := uint64((len(want) + backend.Chunk - 1) / backend.Chunk)
	t.Run("sequential", func(t *testing.T) {
		f := open(t, fsys, "/big")
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ReadAll: %d bytes, equal %v, %v", len(got), bytes.Equal(got, want), err)
		}
		if n := backend.Fetches(f); n > blocks+1 {
			t.Fatalf("%d fetches for %d blocks", n, blocks)
		}
	})
	t.Run("out of order", func(t *testing.T) {
		f := open(t, fsys, "/big")
		// 32 KiB requests, shuffled within windows of 16, as a pipelining
		// SFTP client's reach the server's workers.
		const req, window = 32 << 10, 16
		var offs []int64
		for off := int64(0); off < int64(len(want)); off += req {
			offs = append(offs, off)
		}
		r := rand.New(rand.NewPCG(1, 2))
		got := make([]byte, len(want))
		for i := 0; i < len(offs); i += window {
			w := offs[i:min(i+window, len(offs))]
			r.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
			for _, off := range w {
				n, err := f.ReadAt(got[off:min(off+req, int64(len(got)))], off)
				if err != nil && err != io.EOF || off+int64(n) != min(off+req, int64(len(got))) {
					t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
				}
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatal("content differs")
		}
		if n := backend.Fetches(f); n > blocks+1 {
			t.Fatalf("%d fetches for %d blocks", n, blocks)
		}
	})
}

// TestReadAgainAsksForTheBytesOnly: a read of bytes a block already gave
// is asked of the agent for just those bytes (sftp-server's pread), not as
// a new block: a reader coming back to one page (sqlite over sshfs) moves
// that page, not a MiB each time; and it gets what the file holds now.
func TestReadAgainAsksForTheBytesOnly(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	a, fsys := agentWith(t, "db", data)
	f := open(t, fsys, "/db")
	p := make([]byte, 4096)
	for i := range 20 {
		if i == 10 {
			w, err := os.OpenFile(a.Dir+"/db", os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt([]byte("PAGE"), 8192); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}
		n, err := f.ReadAt(p, 8192)
		want := data[8192 : 8192+4096]
		if i >= 10 {
			want = append([]byte("PAGE"), want[4:]...)
		}
		if err != nil || n != len(p) || !bytes.Equal(p, want) {
			t.Fatalf("read %d: %d bytes, %v, equal %v", i, n, err, bytes.Equal(p, want))
		}
	}
	if n := backend.Fetches(f); n != 1 {
		t.Fatalf("%d blocks fetched for 20 reads of one page, want 1 (the rest asked for the page alone)", n)
	}
}

// TestWriteInPlaceLands: a Write into a file in place is on disk when it
// returns, before Close, for anyone reading the file; one larger than the
// agent's message limit (4 MiB) goes in pieces and does not break the
// session's stream for its other files.
func TestWriteInPlaceLands(t *testing.T) {
	a, fsys := agentWith(t, "log", []byte("line1\n"))
	other := open(t, fsys, "/log")
	f, err := fsys.OpenFile("/log", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("line2\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(a.Dir + "/log"); string(got) != "line1\nline2\n" {
		t.Fatalf("on disk after Write, before Close: %q", got)
	}
	big := bytes.Repeat([]byte("x"), 5<<20+123)
	if n, err := f.Write(big); err != nil || n != len(big) {
		t.Fatalf("Write of %d bytes: %d, %v", len(big), n, err)
	}
	if fi, err := os.Stat(a.Dir + "/log"); err != nil || fi.Size() != int64(12+len(big)) {
		t.Fatalf("on disk after the big Write: %v, %v", fi, err)
	}
	if fi, err := other.Stat(); err != nil || fi.Size() != int64(12+len(big)) {
		t.Fatalf("another file on the stream after the big Write: %v, %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
