package agents_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agents"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestEmbeddedEventsInProcess: a pool follows its embedded agent's events
// in process and a remote agent's over gRPC, and both arrive in commit
// order, each with its agent's boot id and consecutive sequence numbers.
// The gRPC connection's observer sees the remote agent's Events stream
// end when the pool closes, and never the embedded one's.
func TestEmbeddedEventsInProcess(t *testing.T) {
	remote := agenttest.Start(t, "")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(remote.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	embeddedRoot := t.TempDir()
	var mu sync.Mutex
	var calls []string
	events := make(chan agents.Event, 64)
	pool, err := agents.New(context.Background(), map[string]config.Agent{
		"local":  {Embedded: true, Root: embeddedRoot},
		"remote": {Address: remote.Addr, TokenFile: tokenFile},
	}, agents.Options{
		Logger: slog.New(slog.DiscardHandler),
		ObserveCall: func(agent, method, code string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, agent+" "+method+" "+code)
		},
		OnEvent: func(e agents.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			pool.Close()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const files = 5
	for name, dir := range map[string]string{"local": embeddedRoot, "remote": remote.Dir} {
		if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
			t.Fatal(err)
		}
		fsys, _, err := pool.FS(ctx, name, "alice", backend.Options{Root: "alice"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var boot string
		var seq uint64
		for i := range files {
			content := fmt.Sprintf("<?php // %d\n", i)
			if err := afero.WriteFile(fsys, fmt.Sprintf("/f%d.php", i), []byte(content), 0o644); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			select {
			case e := <-events:
				want := fmt.Sprintf("alice/f%d.php", i)
				if e.Agent != name || e.Change == nil || e.Change.Op != "write" || e.Change.Path != want || e.Change.Size != int64(len(content)) {
					t.Fatalf("%s: event %+v %+v, want the write of %s", name, e, e.Change, want)
				}
				b, n, ok := strings.Cut(e.ID, "/")
				if !ok {
					t.Fatalf("%s: event id %q", name, e.ID)
				}
				var got uint64
				if _, err := fmt.Sscan(n, &got); err != nil {
					t.Fatalf("%s: event id %q: %v", name, e.ID, err)
				}
				if i > 0 && (b != boot || got != seq+1) {
					t.Errorf("%s: event %s after %s/%d", name, e.ID, boot, seq)
				}
				boot, seq = b, got
			case <-time.After(15 * time.Second):
				t.Fatalf("%s: no event of commit %d", name, i)
			}
		}
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	mu.Lock()
	defer mu.Unlock()
	var remoteEvents, localEvents int
	for _, c := range calls {
		switch {
		case strings.HasPrefix(c, "remote Events "):
			remoteEvents++
		case strings.HasPrefix(c, "local Events "):
			localEvents++
		}
	}
	if remoteEvents != 1 || localEvents != 0 {
		t.Errorf("observed Events streams: %d of the remote agent (want 1), %d of the embedded one (want 0); calls %v", remoteEvents, localEvents, calls)
	}
}
