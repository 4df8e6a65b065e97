package differential_test

import (
	"testing"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// upgateBinary is the upgate binary TestMain builds for the agent
// process; set once, before any test runs.
var upgateBinary string

// startUpgate starts upgate as the comparisons run it: a real gateway
// whose agent is "upgate agent" in a process of its own, running as a
// user that is not root, as deployments run it
// (gwtest.StartAgentProcess). The reference servers' logins are not root
// either, so permission checks (a file mode 0444, a directory mode 0555)
// are the kernel's on both sides. listen sets the gateway's listeners.
func startUpgate(t *testing.T, listen func(*config.Config)) *gwtest.Env {
	t.Helper()
	if upgateBinary == "" {
		t.Fatal("no upgate binary: TestMain did not build it")
	}
	return gwtest.StartAgentProcess(t, upgateBinary, listen)
}
