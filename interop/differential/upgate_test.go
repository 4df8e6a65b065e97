package differential_test

import (
	"os"
	"testing"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

// upgateBinary is the upgate binary TestMain builds for the agent
// process; set once, before any test runs.
var upgateBinary string

// buildForTests builds upgate into a temporary directory for the package's
// tests and returns the binary and a function that removes it.
func buildForTests() (string, func(), error) {
	dir, err := os.MkdirTemp("", "upgate-differential-")
	if err != nil {
		return "", nil, err
	}
	// The agent process's user runs the binary from here.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	bin, err := agenttest.BuildUpgate(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// upgateServer is upgate as the comparisons run it: a real gateway whose
// agent is "upgate agent" in a process of its own, running as a user
// that is not root (agenttest.NonRootUID), as deployments run it. The
// reference servers' logins are not root either, so permission checks
// (a file mode 0444, a directory mode 0555) are the kernel's on both
// sides.
type upgateServer struct {
	srv   *server.Server
	agent *agenttest.Process
	dir   string // alice's "/" on disk, owned by the agent's user
}

// startUpgate starts the agent process and a gateway whose user alice
// has her "/" on it; listen sets the gateway's listeners.
func startUpgate(t *testing.T, listen func(*config.Config)) *upgateServer {
	t.Helper()
	if upgateBinary == "" {
		t.Fatal("no upgate binary: TestMain did not build it")
	}
	if os.Getuid() != 0 {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatal("the agent process runs as another user: the test needs root")
		}
		t.Skip("the agent process runs as another user: the test needs root")
	}
	a := agenttest.StartProcess(t, upgateBinary, agenttest.NonRootUID, agenttest.NonRootUID)
	dir := a.Dir(t, "alice")
	cfg := gwtest.Config(t, a.Root, gwtest.Users)
	cfg.Agents = map[string]config.Agent{gwtest.Agent: {Address: a.Target, TokenFile: a.TokenFile}}
	listen(cfg)
	return &upgateServer{srv: gwtest.Run(t, cfg), agent: a, dir: dir}
}

// idle waits until the agent holds no open file or upload.
func (u *upgateServer) idle(t *testing.T) { u.agent.WaitIdle(t, 15*time.Second) }
