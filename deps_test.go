package upgate_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointOneWay keeps the layers apart: frontends -> gateway ->
// backend -> agentpb, and the agent apart from the gateway. Each rule says
// why.
func TestImportsPointOneWay(t *testing.T) {
	const mod = "github.com/upgate/upgate"
	rules := []struct {
		pkg, forbidden, why string
	}{
		{"/backend", "/gateway", "the filesystem layer never knows who the user is"},
		{"/backend", "/frontends/", "the backend never knows FTP from SFTP"},
		{"/backend/agent", "/backend", "the agent runs in containers: it needs only the protocol"},
		{"/backend/agent/hooks", "google.golang.org/grpc", "the hooks engine knows nothing of the wire: no RPC can carry a command"},
		{"/backend/agent/hooks", "/backend/agentpb", "the hooks engine knows nothing of the wire: no RPC can carry a command"},
		{"/frontends/", "google.golang.org/grpc", "a frontend never talks gRPC; the backend does"},
		{"/frontends/", "/backend/agentpb", "a frontend never talks to agents"},
		{"/frontends/", "/backend/agent", "a frontend never runs an agent"},
		{"/gateway", "/frontends/", "a third protocol must not need a gateway edit"},
		{"/gateway", "/server", "server assembles the gateway, not the other way"},
		{"/config", "/gateway", "config is plain data"},
		{"/config", "/backend", "config is plain data"},
		{"/config", "k8s.io/client-go", "config is plain data: it may parse label selectors, never call the Kubernetes API"},
		{"/frontends/", "k8s.io", "a frontend never talks to Kubernetes"},
		{"/backend/agent", "k8s.io", "the agent runs in containers: it needs only the protocol"},
		{"/gateway", "k8s.io", "the gateway reaches Kubernetes only through backend/agents"},
		{"/gateway", "google.golang.org/grpc", "the gateway never talks gRPC: backend/agents holds the agent client"},
		{"/gateway", "/backend/agentpb", "the gateway never speaks the agent protocol: backend/agents does"},
		{"/gateway", "/backend/agent", "the gateway never runs an agent itself: backend/agents does"},
		{"/backend/podagents", "google.golang.org/grpc", "podagents finds addresses; dialling agents is the backend's"},
		{"/backend/memfs", "google.golang.org/grpc", "memfs is the filesystem layer in memory: no agent, no wire"},
		{"/backend/memfs", "/backend/agentpb", "memfs is the filesystem layer in memory: no agent, no wire"},
		{"/gateway", "/backend/memfs", "memfs is a test fixture and an example: users' files never live in the gateway's memory"},
		{"/frontends/", "/backend/memfs", "memfs is a test fixture and an example: frontends' tests may use it, their code never"},
		{"/server", "/backend/memfs", "memfs is a test fixture and an example: users' files never live in the gateway's memory"},
		{"/cmd/", "/backend/memfs", "memfs is a test fixture and an example: users' files never live in the gateway's memory"},
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	matches := func(pkg, pattern string) bool {
		if strings.HasPrefix(pattern, "/") {
			full := mod + pattern
			if strings.HasSuffix(pattern, "/") {
				return strings.HasPrefix(pkg, full)
			}
			return pkg == full || strings.HasPrefix(pkg, full+"/")
		}
		return pkg == pattern || strings.HasPrefix(pkg, pattern+"/")
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		for _, r := range rules {
			if !matches(pkg, r.pkg) {
				continue
			}
			checked++
			for _, imp := range imports {
				// A package may import its own subtree (backend/agent its
				// hooks engine), and backend/agent the protocol.
				if matches(imp, r.forbidden) && !strings.HasPrefix(imp, pkg+"/") &&
					!(r.forbidden == "/backend" && matches(imp, "/backend/agentpb")) {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package matched any rule: the module path or layout changed")
	}
}
