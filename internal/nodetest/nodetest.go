// Package nodetest runs the Node.js interop scripts in interop/node for
// the frontends' tests. CI installs their packages with
// `(cd interop/node && npm ci --ignore-scripts)`; without node or
// interop/node/node_modules the tests skip, and UPGATE_REQUIRE_INTEROP=1
// makes that a failure.
package nodetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
)

// Script returns node's path and the absolute path of the script name in
// interop/node, or skips (fails under UPGATE_REQUIRE_INTEROP=1). It
// expects the test to run in a package two levels below the module root,
// as frontends/ftp and frontends/sftp are.
func Script(t testing.TB, name string) (node, script string) {
	t.Helper()
	node = gwtest.RequireTool(t, "node")
	dir, err := filepath.Abs(filepath.Join("..", "..", "interop", "node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("interop/node/node_modules is required (UPGATE_REQUIRE_INTEROP=1); run (cd interop/node && npm ci --ignore-scripts): %v", err)
		}
		t.Skip("interop/node/node_modules missing; run (cd interop/node && npm ci --ignore-scripts)")
	}
	return node, filepath.Join(dir, name)
}

// Run runs `node script ARGS...` in the script's directory with extraEnv
// added to the environment, bounded by 60 s, and decodes its JSON report
// into out. A failed or timed-out run, or a report that is not JSON,
// fails the test with the script's output.
func Run(t testing.TB, node, script string, extraEnv []string, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("%s: bad JSON: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), err, stdout.String(), stderr.String())
	}
	if testing.Verbose() && stderr.Len() > 0 {
		t.Logf("%s stderr:\n%s", filepath.Base(script), stderr.String())
	}
}

// Sum returns the hex sha256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
