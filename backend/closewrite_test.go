package backend_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// spyStream records what a GRPCFs sends on its Session stream and can
// hide FILE_FEATURE_CLOSE_WITH_WRITE from the agent's Hello, as an agent
// from before it would answer.
type spyStream struct {
	agentpb.Agent_SessionClient
	old bool

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
	s.mu.Lock()
	s.sent = append(s.sent, what)
	s.mu.Unlock()
	return s.Agent_SessionClient.Send(req)
}

func (s *spyStream) Recv() (*agentpb.SessionResponse, error) {
	resp, err := s.Agent_SessionClient.Recv()
	if h := resp.GetHello(); h != nil && s.old {
		h.Features &^= uint32(agentpb.FileFeature_FILE_FEATURE_CLOSE_WITH_WRITE)
	}
	return resp, err
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
			spy := &spyStream{old: tc.old}
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			g := backend.NewGRPCFs(ctx, a.Conn, backend.Options{Agent: "test", Session: func(ctx context.Context) (agentpb.Agent_SessionClient, error) {
				s, err := agentpb.NewAgentClient(a.Conn).Session(ctx)
				spy.Agent_SessionClient = s
				return spy, err
			}})
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
