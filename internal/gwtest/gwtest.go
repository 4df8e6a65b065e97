// Package gwtest runs a real gateway (server.Start) with one agent,
// embedded or in a process of its own, for tests of the frontends and the
// server.
package gwtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/crypto/bcrypt"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/server"
)

// Agent is the name of the gateway's one agent.
const Agent = "embedded"

// Users are the users of a gateway from Start: name -> password. Each
// user's files live in <agent root>/<name>.
var Users = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// Env is a running gateway with one agent: embedded (Start), or in a
// process of its own (StartAgentProcess).
type Env struct {
	Root string // the agent's root directory
	Srv  *server.Server

	proc *agenttest.Process // StartAgentProcess's agent; nil when embedded
}

// UserDir is where user's files land in the agent's directory.
func (e *Env) UserDir(user string) string { return filepath.Join(e.Root, user) }

// AgentIdle waits until the agent holds no open file.
func (e *Env) AgentIdle(t testing.TB) {
	t.Helper()
	if e.proc != nil {
		e.proc.WaitIdle(t, 15*time.Second)
		return
	}
	a, ok := e.Srv.Gateway.AgentPool().Embedded(Agent)
	if !ok {
		t.Fatal("no embedded agent")
	}
	deadline := time.Now().Add(15 * time.Second)
	for a.OpenHandles() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent still holds %d open files", a.OpenHandles())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Config returns the default configuration with the embedded agent
// serving root and users (name -> password), each mounted at / on
// <root>/<name>. It sets no listener, and turns cpu.adaptive off.
func Config(t testing.TB, root string, users map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = map[string]config.Agent{Agent: {Embedded: true, Root: root}}
	// GOMAXPROCS is the process's, and tests run gateways side by side:
	// one controller per gateway would fight over it. Tests of the
	// controller turn it on. (Tests that load a config without gwtest run
	// one gateway at a time and keep the loaded default.)
	cfg.CPU.Adaptive = false
	names := make([]string, 0, len(users))
	for name := range users {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(users[name]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, config.User{Name: name, PasswordHash: string(h),
			Mounts: []config.Mount{{Path: "/", Agent: Agent, Root: name}}})
	}
	return cfg
}

// Run validates cfg and starts the gateway; it shuts down in t.Cleanup,
// where an error fails the test. It logs nowhere, or at debug level to
// stderr when UPGATE_TEST_LOG is set.
func Run(t testing.TB, cfg *config.Config) *server.Server {
	t.Helper()
	return RunWith(t, cfg, server.Options{})
}

// RunWith is Run with server options; their Logger is Run's unless set.
func RunWith(t testing.TB, cfg *config.Config, opts server.Options) *server.Server {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("UPGATE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Logger == nil {
		opts.Logger = log
	}
	srv, err := server.Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// Start runs a gateway whose embedded agent serves a t.TempDir() to
// Users. edit, which sets the listeners, adjusts the config before it is
// validated. Everything stops in t.Cleanup.
func Start(t testing.TB, edit func(*config.Config)) *Env {
	t.Helper()
	root := t.TempDir()
	cfg := Config(t, root, Users)
	if edit != nil {
		edit(cfg)
	}
	return &Env{Root: root, Srv: Run(t, cfg)}
}

// RequireTool returns the path of a client program, and skips when it is
// missing, unless UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s is required (UPGATE_REQUIRE_INTEROP=1): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// StartFS runs a gateway as Start does, except that each login's tree is
// fsys(user) (server.Options.Filesystem) instead of the user's directory
// on the embedded agent: an in-memory filesystem with injected faults
// (backend/memfs), say. Users log in as with Start, through the real
// login path, session view and accounting.
func StartFS(t testing.TB, edit func(*config.Config), fsys func(user string) afero.Fs) *Env {
	t.Helper()
	root := t.TempDir()
	cfg := Config(t, root, Users)
	if edit != nil {
		edit(cfg)
	}
	return &Env{Root: root, Srv: RunWith(t, cfg, server.Options{
		Filesystem: func(_ context.Context, user string) (afero.Fs, error) { return fsys(user), nil },
	})}
}

// StartAgentProcess runs a gateway as Start does, except that its agent
// is bin's "upgate agent" (agenttest.BuildUpgate) in a process of its own,
// running as agenttest.NonRootUID, as deployments run it: the kernel then
// checks its permissions as it checks an OpenSSH or vsftpd login's. Each
// of Users has a directory in the agent's root owned by that user. It
// needs root (agenttest.StartProcess).
func StartAgentProcess(t testing.TB, bin string, edit func(*config.Config)) *Env {
	t.Helper()
	p := agenttest.StartProcess(t, bin, agenttest.NonRootUID, agenttest.NonRootUID)
	for name := range Users {
		p.Dir(t, name)
	}
	cfg := Config(t, p.Root, Users)
	cfg.Agents = map[string]config.Agent{Agent: {Address: p.Target, TokenFile: p.TokenFile}}
	if edit != nil {
		edit(cfg)
	}
	return &Env{Root: p.Root, Srv: Run(t, cfg), proc: p}
}
