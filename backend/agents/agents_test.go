package agents_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agents"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv(roundTripChildEnv); kind != "" {
		if err := serveRoundTripChild(kind); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestPool: a pool with an embedded agent and a remote one (a real agent
// on loopback, reached with its token file) gives users' filesystems on
// both, reports their health and their calls, hands on the events of
// what they commit, refuses a reload that changes an embedded agent, and
// leaves no goroutine behind when closed.
func TestPool(t *testing.T) {
	remote := agenttest.Start(t, "")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(remote.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	embeddedRoot := t.TempDir()
	cfg := map[string]config.Agent{
		"local":  {Embedded: true, Root: embeddedRoot},
		"remote": {Address: remote.Addr, TokenFile: tokenFile},
	}
	var mu sync.Mutex
	var calls []string
	var health []agents.Status
	events := make(chan agents.Event, 16)
	pool, err := agents.New(context.Background(), cfg, agents.Options{
		Logger: slog.New(slog.DiscardHandler),
		ObserveCall: func(agent, method, code string, d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, agent+" "+method+" "+code)
		},
		Health: func(s agents.Status) {
			mu.Lock()
			defer mu.Unlock()
			health = append(health, s)
		},
		OnEvent: func(e agents.Event) { events <- e },
		// On a loaded machine (CI runs packages side by side) the first
		// Hello of the remote agent's events can take longer than a
		// login's 2 s: the commit would then come before the stream
		// and reach no event (a CI run of e65a62b..75cfc6a).
		FollowWait: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for name, dir := range map[string]string{"local": embeddedRoot, "remote": remote.Dir} {
		if err := os.Mkdir(filepath.Join(dir, "alice"), 0o755); err != nil {
			t.Fatal(err)
		}
		fsys, target, err := pool.FS(ctx, name, "alice", backend.Options{Root: "alice"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if target == "" {
			t.Errorf("%s: no target", name)
		}
		f, err := fsys.OpenFile("/x.php", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := f.Write([]byte("<?php\n")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "alice", "x.php")); err != nil || string(b) != "<?php\n" {
			t.Fatalf("%s: %q, %v", name, b, err)
		}
		select {
		case e := <-events:
			if e.Agent != name || e.Change == nil || e.Change.Op != "write" || e.Change.Path != "alice/x.php" || e.Change.Size != 6 {
				t.Errorf("%s: event %+v %+v", name, e, e.Change)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no event of the commit", name)
		}
	}
	if _, ok := pool.Embedded("local"); !ok {
		t.Error("no embedded agent local")
	}
	deadline := time.Now().Add(15 * time.Second)
	for !pool.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %+v", pool.Statuses())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range pool.Statuses() {
		if !s.Up || s.Checked.IsZero() {
			t.Errorf("status %+v", s)
		}
	}
	mu.Lock()
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c] = true
	}
	if !seen["local Open OK"] || !seen["remote Close OK"] || !seen["remote Status OK"] || len(health) < 2 {
		t.Errorf("calls %v, health %d", calls, len(health))
	}
	mu.Unlock()

	changed := map[string]config.Agent{"local": {Embedded: true, Root: t.TempDir()}, "remote": cfg["remote"]}
	if err := pool.Reload(changed); err == nil {
		t.Error("a reload moved an embedded agent's root")
	}
	if _, _, err := pool.FS(ctx, "nosuch", "alice", backend.Options{}); err == nil {
		t.Error("an agent that is not configured gave a filesystem")
	}
}
