package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/syncbuf"
)

// procsLine is the CPU controller's debug line for each change.
var procsLine = regexp.MustCompile(`msg="Go Ps follow the busy sessions" component=procs procs=(\d+) `)

// TestAgentCommandFollowsSessions: `upgate agent` runs one Go P while one
// gateway session works, two while two do, and one again once they stop
// (its controller's debug lines say what it set); every file both
// sessions wrote is on disk as sent. With --adaptive-procs=false the
// controller does not start.
func TestAgentCommandFollowsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: the agent keeps its one P")
	}
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment: the agent's Ps do not follow")
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	session := func(addr string) *backend.GRPCFs { // one Session stream each
		cc, err := backend.Dial(addr, backend.DialOptions{Token: "agent-secret"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return backend.NewGRPCFs(ctx, cc, backend.Options{CallTimeout: 5 * time.Second})
	}
	// set is every number of Ps the controller set, in order.
	set := func(stderr *syncbuf.Buffer) []int {
		var ns []int
		for _, m := range procsLine.FindAllStringSubmatch(stderr.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			ns = append(ns, n)
		}
		return ns
	}
	waitFor := func(what string, stderr *syncbuf.Buffer, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; the agent logged:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	last := func(stderr *syncbuf.Buffer) int {
		if ns := set(stderr); len(ns) > 0 {
			return ns[len(ns)-1]
		}
		return 0
	}

	root, addr, stderr, _ := startAgent(t, bin, "--log-level", "debug")
	a, b := session(addr), session(addr)
	waitFor("the agent up, its controller at one P", stderr, func() bool {
		_, err := a.Stat("/")
		return err == nil && last(stderr) == 1
	})
	if !strings.Contains(stderr.String(), `msg="Go Ps follow the busy sessions" component=procs max=`) {
		t.Fatalf("no start line from the controller:\n%s", stderr.String())
	}

	// Both sessions upload, file after file, until the Ps follow.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters() // a failed wait below ends them too
	written := make([]int, 2)
	for i, fsys := range []*backend.GRPCFs{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := afero.WriteFile(fsys, fmt.Sprintf("/s%d-%d.bin", i, n%50), fstest.Data(2000, uint64(n)), 0o644); err != nil {
					t.Errorf("session %d, file %d: %v", i, n, err)
					return
				}
				written[i] = n + 1
			}
		}()
	}
	waitFor("two Ps while two sessions upload", stderr, func() bool { return last(stderr) == 2 })
	stopWriters()
	for i, n := range written {
		for k := max(n-50, 0); k < n; k++ {
			name := filepath.Join(root, fmt.Sprintf("s%d-%d.bin", i, k%50))
			if got, err := os.ReadFile(name); err != nil || !bytes.Equal(got, fstest.Data(2000, uint64(k))) {
				t.Fatalf("%s: %d bytes (%v), not the 2,000 sent last", name, len(got), err)
			}
		}
	}
	waitFor("one P again once the sessions stop", stderr, func() bool { return last(stderr) == 1 })
	if ns := set(stderr); !slices.Contains(ns, 2) {
		t.Fatalf("Ps set: %v", ns)
	}

	// Turned off, the controller neither starts nor sets anything.
	_, addr, stderr, _ = startAgent(t, bin, "--log-level", "debug", "--adaptive-procs=false")
	c := session(addr)
	waitFor("the agent without a controller up", stderr, func() bool { _, err := c.Stat("/"); return err == nil })
	if strings.Contains(stderr.String(), "Go Ps follow") {
		t.Fatalf("--adaptive-procs=false, and the controller ran:\n%s", stderr.String())
	}
}
