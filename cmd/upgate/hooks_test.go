package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/syncbuf"
)

// proc is a process of the upgate binary, stopped in t.Cleanup.
type proc struct {
	cmd    *exec.Cmd
	stderr syncbuf.Buffer
	done   chan error
}

// startProc runs bin with args; Cleanup sends SIGTERM and waits (then
// kills) for at most 30 s.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%v did not stop within 30 s of SIGTERM:\n%s", p.cmd.Args, p.stderr.String())
	}
}

// lines streams r's lines to a channel until r ends.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 1000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// expectLines reads ch until each of want has matched a line, in order,
// for at most d; it returns the lines read and fails on a line with any
// of never.
func expectLines(t *testing.T, what string, ch <-chan string, d time.Duration, never []string, want ...string) []string {
	t.Helper()
	var got []string
	timeout := time.After(d)
	for len(want) > 0 {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("%s ended before %q; read:\n%s", what, want[0], strings.Join(got, "\n"))
			}
			got = append(got, l)
			for _, n := range never {
				if strings.Contains(l, n) {
					t.Errorf("%s: line %q has %q", what, l, n)
				}
			}
			if strings.Contains(l, want[0]) {
				want = want[1:]
			}
		case <-timeout:
			t.Fatalf("%s: no %q within %v; read:\n%s", what, want[0], d, strings.Join(got, "\n"))
		}
	}
	return got
}

// TestHooksEndToEnd: `upgate agent --hooks` behind `upgate serve`, both
// real processes. Alice's lftp upload of a PHP file shows in `upgate
// events --follow --user alice` and on /api/events?user=alice as its
// commit, then the hook's run; bob's upload shows in neither. A restarted
// gateway does not replay the old run, and shows the next one once.
func TestHooksEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	gwtest.RequireTool(t, "lftp")
	bin := buildBinary(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "srv")
	tokenFile, hooksFile, cfgFile := filepath.Join(dir, "token"), filepath.Join(dir, "hooks.yaml"), filepath.Join(dir, "upgate.yaml")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	write(tokenFile, "agent-secret\n")
	write(hooksFile, `hooks:
  - name: view-clear
    match: ["**/*.php"]
    command: ["sh", "-c", "echo compiled views cleared; cat"]
    debounce: 200ms
`)
	// Refused at start: a hook file in the root, a malformed one.
	badHooks := filepath.Join(dir, "bad.yaml")
	write(badHooks, "hooks:\n  - {name: x, match: [\"**/*.php\"], command: php artisan}\n")
	write(filepath.Join(root, "hooks.yaml"), "hooks: []\n")
	for file, want := range map[string]string{
		filepath.Join(root, "hooks.yaml"): "is inside the agent root",
		badHooks:                          "cannot unmarshal",
	} {
		out, err := exec.Command(bin, "agent", "--listen", "127.0.0.1:0", "--root", root, "--token-file", tokenFile, "--hooks", file).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--hooks: hooks: ") || !strings.Contains(string(out), want) {
			t.Errorf("agent --hooks %s: %v\n%s", file, err, out)
		}
	}
	if err := os.Remove(filepath.Join(root, "hooks.yaml")); err != nil {
		t.Fatal(err)
	}

	addrs := freeAddrs(t, 3)
	agentAddr, ftpAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	agentProc := startProc(t, bin, "agent", "--listen", agentAddr, "--root", root, "--token-file", tokenFile, "--hooks", hooksFile)

	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	write(cfgFile, fmt.Sprintf(`listen: {ftp: %q, sftp: "", admin: %q}
agents:
  dev: {address: %q, token_file: %q}
users:
  - {name: alice, password_hash: %q, mounts: [{path: /, agent: dev, root: alice}]}
  - {name: bob, password_hash: %q, mounts: [{path: /, agent: dev, root: bob}]}
`, ftpAddr, adminAddr, agentAddr, tokenFile, hash, hash))
	serve := func() *proc {
		t.Helper()
		p := startProc(t, bin, "serve", "--config", cfgFile)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + adminAddr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway not ready: %v\n%s\nagent:\n%s", err, p.stderr.String(), agentProc.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put := func(user, name string) {
		t.Helper()
		local := filepath.Join(t.TempDir(), name)
		write(local, "<?php echo '"+name+"';\n")
		_, port, _ := strings.Cut(ftpAddr, ":")
		cmd := exec.Command("lftp", "-c", fmt.Sprintf("set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; set ftp:ssl-allow no; "+
			"open -u %s,pw -p %s 127.0.0.1; put %s", user, port, local))
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C.UTF-8")
		cmd.WaitDelay = 5 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("lftp put %s as %s: %v\n%s", name, user, err, out)
		}
	}
	gw := serve()

	// upgate events --follow, and a Server-Sent Events client.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := exec.CommandContext(ctx, bin, "events", "--admin", adminAddr, "--follow", "--user", "alice")
	out, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var followErr syncbuf.Buffer
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followLines := lines(out)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/api/events?user=alice", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("/api/events: %s, Content-Type %q", resp.Status, ct)
	}
	sseLines := lines(resp.Body)
	wg.Add(1)
	go func() {
		defer wg.Done()
		follow.Wait()
	}()

	put("bob", "bob.php")
	// bob's run first: one run for both would show alice only her path,
	// without the output that names bob's.
	waitRuns := func(n int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for strings.Count(agentProc.stderr.String(), `msg="hook ran"`) < n {
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not log %d hook runs within a minute:\n%s", n, agentProc.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRuns(1)
	put("alice", "x.php")
	never := []string{"bob"}
	expectLines(t, "upgate events --follow", followLines, time.Minute, never,
		"commit  write   /x.php", "hook    view-clear  ok  exit=0")
	sse := expectLines(t, "/api/events", sseLines, time.Minute, never,
		"event: commit", `"path":"/x.php"`, "event: hook", `"hook":"view-clear"`)
	var hook struct {
		Data gateway.HookEvent `json:"data"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(sse[len(sse)-1], "data: ")), &hook); err != nil {
		t.Fatal(err)
	}
	if h := hook.Data; h.Result != "ok" || h.Paths[0] != "/x.php" || h.PathsTotal != 1 || h.Output != "compiled views cleared\nalice/x.php\n" {
		t.Errorf("hook event: %+v", h)
	}
	if log := gw.stderr.String(); !strings.Contains(log, `msg="hook ran"`) || !strings.Contains(log, "hook=view-clear result=ok") {
		t.Errorf("the gateway logged no hook run:\n%s", log)
	}
	cancel()
	wg.Wait()

	// A restarted gateway: nothing old is new.
	gw.stop(t)
	serve()
	events := func() string {
		t.Helper()
		out, err := exec.Command(bin, "events", "--admin", adminAddr, "--user", "alice").CombinedOutput()
		if err != nil {
			t.Fatalf("upgate events: %v\n%s", err, out)
		}
		return string(out)
	}
	if got := events(); strings.Contains(got, "hook") || strings.Contains(got, "x.php") {
		t.Errorf("a restarted gateway shows old events:\n%s", got)
	}
	put("alice", "y.php")
	deadline := time.Now().Add(time.Minute)
	for {
		got := events()
		if n := strings.Count(got, "hook "); n > 0 {
			if n != 1 || strings.Contains(got, "x.php") || !strings.Contains(got, "write   /y.php") {
				t.Errorf("after the restart:\n%s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hook run after the restart within a minute:\n%s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if log := agentProc.stderr.String(); strings.Count(log, `msg="hook ran"`) != 3 {
		t.Errorf("the agent logged %d hook runs, want 3 (bob's, alice's two):\n%s", strings.Count(log, `msg="hook ran"`), log)
	}
}
