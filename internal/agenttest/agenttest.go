// Package agenttest starts a real agent on loopback TCP for tests and
// connects the real gRPC client to it.
package agenttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
)

// Agent is a running agent and a client connection to it.
type Agent struct {
	Dir    string // the agent's root directory on disk
	Addr   string // host:port it listens on
	Token  string
	Server *agent.Server
	Conn   *grpc.ClientConn

	stop func()
}

// Start serves dir (t.TempDir() when empty) with a random token on
// 127.0.0.1:0 and dials it. Everything stops in t.Cleanup, which waits for
// the server's goroutines.
func Start(t testing.TB, dir string) *Agent {
	t.Helper()
	return StartWith(t, func(c *agent.Config) { c.Root = dir })
}

// StartWith is Start with the agent's config adjusted by edit (its Root
// empty means a t.TempDir(); Token and Logger are set already).
func StartWith(t testing.TB, edit func(*agent.Config)) *Agent {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := serve(t, lis, newToken(), edit)
	cc, err := backend.Dial(a.Addr, backend.DialOptions{Token: a.Token})
	if err != nil {
		t.Fatal(err)
	}
	a.Conn = cc
	t.Cleanup(func() { cc.Close() })
	return a
}

// Serve serves dir (t.TempDir() when empty) on lis (TCP or a unix socket)
// with token and extra server options (TLS credentials, say), without
// dialling it: Conn is nil. It stops in t.Cleanup.
func Serve(t testing.TB, dir string, lis net.Listener, token string, opts ...grpc.ServerOption) *Agent {
	t.Helper()
	return serve(t, lis, token, func(c *agent.Config) { c.Root = dir }, opts...)
}

func serve(t testing.TB, lis net.Listener, token string, edit func(*agent.Config), opts ...grpc.ServerOption) *Agent {
	t.Helper()
	cfg := agent.Config{Token: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	dir := cfg.Root
	srv, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := agent.Serve(ctx, srv, lis, opts...); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("agent serve: %v", err)
		}
	}()
	a := &Agent{Dir: dir, Addr: lis.Addr().String(), Token: token, Server: srv}
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			if a.Conn != nil {
				a.Conn.Close()
			}
			cancel()
			wg.Wait()
			srv.Close()
		})
	}
	t.Cleanup(a.stop)
	return a
}

// newToken is a random bearer token for an agent.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Stop stops the agent now (it also stops in t.Cleanup).
func (a *Agent) Stop() { a.stop() }

// Fs returns a GRPCFs rooted at root inside the agent, bound to the test's
// lifetime.
func (a *Agent) Fs(t testing.TB, root string) *backend.GRPCFs {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return backend.NewGRPCFs(ctx, a.Conn, backend.Options{Root: root, Agent: "test"})
}

// WaitIdle waits until the agent holds no open file, for at most d, and
// fails the test if it still does.
func (a *Agent) WaitIdle(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for a.Server.OpenHandles() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent still holds %d open handles after %v", a.Server.OpenHandles(), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ afero.Fs = (*backend.GRPCFs)(nil)

// TempFiles lists the names of the agent's atomic-upload temp files
// (agent.TempPrefix) in dir, not below it.
func TempFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), agent.TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TempFilesUnder lists the paths of the agent's atomic-upload temp files
// anywhere under root.
func TempFilesUnder(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), agent.TempPrefix) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
