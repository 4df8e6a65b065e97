package backend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// spyStream records what a GRPCFs sends on its Session stream and can
// hide features from the agent's Hello, as an agent from before them
// would answer.
type spyStream struct {
	agentpb.Agent_SessionClient
	hide agentpb.FileFeature // bits cleared from the Hello

	mu   sync.Mutex
	sent []string
}

func (s *spyStream) Send(req *agentpb.SessionRequest) error {
	what := fmt.Sprintf("%T", req.GetOp())
	if w := req.GetWrite(); w != nil {
		what = fmt.Sprintf("write %d", len(w.GetData()))
	}
	if c := req.GetClose(); c != nil {
		what = fmt.Sprintf("close+write %d", len(c.GetWrite().GetData()))
	}
	if req.GetPosted() {
		what += " posted"
	}
	s.mu.Lock()
	s.sent = append(s.sent, what)
	s.mu.Unlock()
	return s.Agent_SessionClient.Send(req)
}

func (s *spyStream) Recv() (*agentpb.SessionResponse, error) {
	resp, err := s.Agent_SessionClient.Recv()
	if h := resp.GetHello(); h != nil {
		h.Features &^= uint32(s.hide)
	}
	return resp, err
}

// eachAgentVersion runs test twice, each time on an agent of its own seen
// through a spyStream: one announcing feature, and one whose Hello hides
// it, as an agent older than the feature (old).
func eachAgentVersion(t *testing.T, feature agentpb.FileFeature, test func(t *testing.T, a *agenttest.Agent, spy *spyStream, old bool)) {
	for _, old := range []bool{false, true} {
		name := "agent with " + strings.TrimPrefix(feature.String(), "FILE_FEATURE_")
		if old {
			name = "older agent"
		}
		t.Run(name, func(t *testing.T) {
			a := agenttest.Start(t, "")
			spy := &spyStream{}
			if old {
				spy.hide = feature
			}
			test(t, a, spy, old)
		})
	}
}

// fs is a filesystem on a's agent whose Session streams s spies on.
func (s *spyStream) fs(t *testing.T, a *agenttest.Agent) *backend.GRPCFs {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return backend.NewGRPCFs(ctx, a.Conn, backend.Options{Agent: "test", Session: func(ctx context.Context) (agentpb.Agent_SessionClient, error) {
		st, err := agentpb.NewAgentClient(a.Conn).Session(ctx)
		s.Agent_SessionClient = st
		return s, err
	}})
}

func (s *spyStream) fileOps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ops []string
	for _, op := range s.sent {
		if op != "*agentpb.SessionRequest_Hello" && op != "*agentpb.SessionRequest_Open" {
			ops = append(ops, op)
		}
	}
	return ops
}

// TestCloseCarriesLastWrite: with an agent that takes it, an upload's
// last held-back write rides with its close (a small save is an open and
// a close, one message each way); with an agent that does not announce
// it, the write goes before a plain close. The same for io.Copy into the
// file (ReadFrom, an FTP upload's path). The content lands either way.
func TestCloseCarriesLastWrite(t *testing.T) {
	a := agenttest.Start(t, "")
	for _, tc := range []struct {
		name string
		old  bool
		size int
		copy bool // io.Copy (ReadFrom, an FTP upload's path) instead of Write
		want []string
	}{
		{"small", false, 4096, false, []string{"close+write 4096"}},
		{"small/old agent", true, 4096, false, []string{"write 4096", "close+write 0"}},
		// Sequential writes fill messages of just under 1 MiB; the rest
		// rides with the close.
		{"large", false, 3 << 20, false, []string{"write 1048512", "write 1048512", "write 1048512", "close+write 192"}},
		{"large/old agent", true, 3 << 20, false, []string{"write 1048512", "write 1048512", "write 1048512", "write 192", "close+write 0"}},
		{"copy", false, 4096, true, []string{"close+write 4096"}},
		{"copy/old agent", true, 4096, true, []string{"write 4096", "close+write 0"}},
		{"large copy", false, 3 << 20, true, []string{"write 1048512", "write 1048512", "write 1048512", "close+write 192"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &spyStream{}
			if tc.old {
				spy.hide = agentpb.FileFeature_FILE_FEATURE_CLOSE_WITH_WRITE
			}
			g := spy.fs(t, a)
			data := fstest.Data(tc.size, 7)
			f, err := g.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if tc.copy {
				// (struct{ io.Reader } hides bytes.Reader's WriteTo.)
				if n, err := io.Copy(f, struct{ io.Reader }{bytes.NewReader(data)}); err != nil || n != int64(len(data)) {
					t.Fatalf("io.Copy: %d, %v", n, err)
				}
			} else {
				for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
					if _, err := f.Write(p[:min(len(p), 32<<10)]); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := spy.fileOps(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
			got, err := os.ReadFile(filepath.Join(a.Dir, "f"))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("committed %d bytes (%v), want the %d written", len(got), err, len(data))
			}
		})
	}
}

// TestUploadSetattrPosted: an upload's size and times (SFTP's FSETSTAT
// before the close, sshfs's utimens on a file still open) go out without
// waiting for their replies to an agent that aborts the close after a
// failed posted request, and land before the commit; a failure is then
// Stat's and Close's error, and the old file stays. A mode always waits
// (a filesystem may refuse every chmod); so does everything on an agent
// without the feature, and on a file written in place.
func TestUploadSetattrPosted(t *testing.T) {
	a := agenttest.Start(t, "")
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	setattr := func(t *testing.T, f afero.File) {
		t.Helper()
		if err := f.Truncate(3); err != nil {
			t.Fatal(err)
		}
		if err := f.(backend.TimesSetter).SetTimes(mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := f.(backend.ModeSetter).Chmod(0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, name, want string, mode os.FileMode, mt time.Time) {
		t.Helper()
		p := filepath.Join(a.Dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != want || fi.Mode().Perm() != mode || !fi.ModTime().Equal(mt) {
			t.Fatalf("%s: %q, mode %v, mtime %v; want %q, %v, %v", name, got, fi.Mode().Perm(), fi.ModTime().UTC(), want, mode, mt)
		}
	}
	// Whether this filesystem refuses a size of 2^63-1 (EFBIG: ext4, xfs;
	// tmpfs takes it), the failure the test gives a posted truncate.
	probe := filepath.Join(a.Dir, "probe")
	mustWrite(t, probe, "")
	hugeFails := os.Truncate(probe, math.MaxInt64) != nil
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		hide agentpb.FileFeature
		want []string
	}{
		{"posted", 0, []string{"write 6", "*agentpb.SessionRequest_Truncate posted", "*agentpb.SessionRequest_SetTimes posted", "*agentpb.SessionRequest_Fchmod", "*agentpb.SessionRequest_Fstat", "close+write 0"}},
		{"old agent", agentpb.FileFeature_FILE_FEATURE_POSTED_FAILURE_ABORTS, []string{"write 6", "*agentpb.SessionRequest_Truncate", "*agentpb.SessionRequest_SetTimes", "*agentpb.SessionRequest_Fchmod", "*agentpb.SessionRequest_Fstat", "close+write 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spy := &spyStream{hide: tc.hide}
			g := spy.fs(t, a)
			name := "up-" + strings.ReplaceAll(tc.name, " ", "-")
			f, err := g.OpenFile("/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("upload")); err != nil {
				t.Fatal(err)
			}
			setattr(t, f)
			if fi, err := f.Stat(); err != nil || fi.Size() != 3 || !fi.ModTime().Equal(mtime) {
				t.Fatalf("Stat of the open upload: %v, %v; want size 3 and the times set", fi, err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := spy.fileOps(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
			check(t, name, "upl", 0o600, mtime)

			if !hugeFails {
				t.Log("this filesystem takes a size of 2^63-1: no failure to post")
				return
			}
			mustWrite(t, filepath.Join(a.Dir, name), "old\n")
			f, err = g.OpenFile("/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("new\n")); err != nil {
				t.Fatal(err)
			}
			truncErr := f.Truncate(math.MaxInt64)
			_, statErr := f.Stat()
			closeErr := f.Close()
			if tc.hide == 0 {
				for what, err := range map[string]error{"Stat": statErr, "Close": closeErr} {
					if !errors.Is(err, syscall.EFBIG) {
						t.Errorf("%s after a posted truncate the filesystem refused: %v, want EFBIG", what, err)
					}
				}
				if truncErr != nil {
					t.Errorf("posted Truncate: %v, want no error before its reply", truncErr)
				}
				if got, _ := os.ReadFile(filepath.Join(a.Dir, name)); string(got) != "old\n" {
					t.Fatalf("after the failed close: %q, want the old content", got)
				}
			} else {
				if !errors.Is(truncErr, syscall.EFBIG) || statErr != nil || closeErr != nil {
					t.Fatalf("Truncate: %v, Stat: %v, Close: %v; want EFBIG from Truncate, then a commit", truncErr, statErr, closeErr)
				}
				if got, _ := os.ReadFile(filepath.Join(a.Dir, name)); string(got) != "new\n" {
					t.Fatalf("after the close: %q, want the new content", got)
				}
			}
		})
	}

	// Written in place (no atomic upload): every request waits.
	mustWrite(t, filepath.Join(a.Dir, "inplace"), "in place\n")
	spy := &spyStream{}
	f, err := spy.fs(t, a).OpenFile("/inplace", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	setattr(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := spy.fileOps(), []string{"*agentpb.SessionRequest_Truncate", "*agentpb.SessionRequest_SetTimes", "*agentpb.SessionRequest_Fchmod", "close+write 0"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("in place: sent %q, want %q", got, want)
	}
	check(t, "inplace", "in ", 0o600, mtime)
}

// mustWrite puts a file on the agent's disk directly, mode 0644.
func mustWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestViewWritesInOrder: through a View, a write held back to ride with
// its upload's close lands before a write through another handle of the
// same upload that came after it: an append through a second handle went
// to the end of the file without the first handle's write, which then
// landed over it (TestSFTPRandom, seed 192: "E56A52" where sftp-server
// has "\0\0\0A52E56").
func TestViewWritesInOrder(t *testing.T) {
	a := agenttest.Start(t, "")
	if err := os.WriteFile(filepath.Join(a.Dir, "a"), []byte("alpha"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := backend.NewView((&spyStream{}).fs(t, a))
	up, err := v.OpenFile("/a", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	app, err := v.OpenFile("/a", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteAt([]byte("A52"), 3); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Write([]byte("E56")); err != nil {
		t.Fatal(err)
	}
	// A stat of the path counts the append, held back on its handle
	// (TestSFTPRandom seed 941), and so does the listing.
	if fi, err := v.Stat("/a"); err != nil || fi.Size() != 9 {
		t.Errorf("stat /a before the closes: %v, %v; want size 9", fi, err)
	}
	if fis, err := afero.ReadDir(v, "/"); err != nil || len(fis) != 1 || fis[0].Size() != 9 {
		t.Errorf("listing / before the closes: %v, %v; want a of size 9", fis, err)
	}
	for _, f := range []afero.File{app, up} { // the append's close first
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(a.Dir, "a"))
	if want := "\x00\x00\x00A52E56"; err != nil || string(got) != want {
		t.Fatalf("a = %q (%v), want %q", got, err, want)
	}
}
