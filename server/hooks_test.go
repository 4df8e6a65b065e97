package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"github.com/spf13/afero"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/gateway/feed"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

// hookRecorder is a hook command: it writes what it was given (stdin,
// UPGATE_CHANGED_COUNT) into a new directory under RUNS per run.
const hookRecorder = `#!/bin/sh
d="RUNS/$(date +%s%N)-$$"
mkdir "$d.tmp"
cat > "$d.tmp/stdin"
printf '%s\n' "$UPGATE_CHANGED_COUNT" > "$d.tmp/count"
mv "$d.tmp" "$d"
`

// hookEnv is a gateway whose embedded agent has a hook file, with alice
// and bob (password "pw") in <root>/<user>, and feed events from the
// start: alice's, and all.
type hookEnv struct {
	srv         *server.Server
	root        string
	runs        string // the recorder's runs
	events, all <-chan feed.Event
}

// startHooked runs a gateway with FTP, SFTP and admin on loopback whose
// embedded agent reads hooksYAML, where RECORDER names hookRecorder.
func startHooked(t *testing.T, hooksYAML string, edit func(*config.Config)) *hookEnv {
	t.Helper()
	e := &hookEnv{root: t.TempDir(), runs: t.TempDir()}
	dir := t.TempDir()
	script := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(hookRecorder, "RUNS", e.runs)), 0o755); err != nil {
		t.Fatal(err)
	}
	hooksFile := filepath.Join(dir, "hooks.yaml")
	if err := os.WriteFile(hooksFile, []byte(strings.ReplaceAll(hooksYAML, "RECORDER", script)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := gwtest.Config(t, e.root, map[string]string{"alice": "pw", "bob": "pw"})
	cfg.Agents[gwtest.Agent] = config.Agent{Embedded: true, Root: e.root, Hooks: hooksFile}
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = ""
	cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
	if edit != nil {
		edit(cfg)
	}
	e.srv = gwtest.Run(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Commits and hook runs only: the test reads them after a whole
	// mirror, and a subscriber that falls a few hundred events behind
	// loses some (feed.Subscribe); transfers would crowd them out.
	_, e.events = e.srv.Gateway.Feed().Subscribe(ctx, 0, func(ev feed.Event) bool {
		return ev.User == "alice" && (ev.Kind == gateway.KindCommit || ev.Kind == gateway.KindHook)
	})
	_, e.all = e.srv.Gateway.Feed().Subscribe(ctx, 0, nil)
	return e
}

func (e *hookEnv) agent(t *testing.T) *agent.Server {
	t.Helper()
	a, ok := e.srv.Gateway.AgentPool().Embedded(gwtest.Agent)
	if !ok {
		t.Fatal("no embedded agent")
	}
	return a
}

// until collects alice's events up to the first that stop accepts, for
// at most d.
func (e *hookEnv) until(t *testing.T, d time.Duration, stop func(feed.Event) bool) []feed.Event {
	t.Helper()
	var out []feed.Event
	timeout := time.After(d)
	for {
		select {
		case ev := <-e.events:
			out = append(out, ev)
			if stop(ev) {
				return out
			}
		case <-timeout:
			t.Fatalf("no such event within %v; got %d events: %s", d, len(out), describeFeed(out))
		}
	}
}

// quiet checks that no hook event comes within d.
func (e *hookEnv) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-e.events:
			if ev.Kind == gateway.KindHook {
				t.Fatalf("unexpected hook run: %+v", ev.Data)
			}
		case <-timeout:
			return
		}
	}
}

func isHook(ev feed.Event) bool { return ev.Kind == gateway.KindHook }

func describeFeed(evs []feed.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		switch d := ev.Data.(type) {
		case gateway.CommitEvent:
			fmt.Fprintf(&b, "%s %s; ", d.Op, d.Path)
		case gateway.HookEvent:
			fmt.Fprintf(&b, "hook %s %s %v; ", d.Hook, d.Result, d.Paths)
		default:
			fmt.Fprintf(&b, "%s; ", ev.Kind)
		}
	}
	return b.String()
}

// recordedRuns returns each finished run's stdin lines, oldest first.
func (e *hookEnv) recordedRuns(t *testing.T) [][]string {
	t.Helper()
	ents, err := os.ReadDir(e.runs)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, ent := range ents {
		if strings.HasSuffix(ent.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(e.runs, ent.Name(), "stdin"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Fields(string(b)))
	}
	return out
}

func runLftp(t *testing.T, script string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "lftp", "-c", script)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C.UTF-8")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lftp: %v\n%s", err, out)
	}
}

func lftpOpen(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; set ftp:ssl-allow no; " +
		"open -u alice,pw -p " + port + " 127.0.0.1; "
}

// TestHookRunsOnceForAMirror: `lftp mirror -R` of 200 PHP files (and a
// README the hook does not match) runs the PHP hook exactly once, with
// all 200 paths on its stdin; the feed shows every commit, then the run.
func TestHookRunsOnceForAMirror(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	const debounce = time.Second // generous: a loaded machine can pause lftp between files
	e := startHooked(t, fmt.Sprintf(`
hooks:
  - name: php
    match: ["**/*.php"]
    command: [RECORDER]
    debounce: %v
`, debounce), nil)
	local := t.TempDir()
	var wantAgent, wantUser []string
	for i := range 200 {
		rel := fmt.Sprintf("app/m%d/f%03d.php", i%4, i)
		if err := os.MkdirAll(filepath.Join(local, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(local, rel), []byte(fmt.Sprintf("<?php return %d;\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		wantAgent = append(wantAgent, "alice/site/"+rel)
		wantUser = append(wantUser, "/site/"+rel)
	}
	if err := os.WriteFile(filepath.Join(local, "README.md"), []byte("# not PHP\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	slices.Sort(wantAgent)
	slices.Sort(wantUser)

	runLftp(t, lftpOpen(e.srv.FTPAddr.String())+"mirror -R --no-perms "+local+" /site")
	evs := e.until(t, 2*time.Minute, isHook)
	e.quiet(t, 3*debounce)

	var writes []string
	var lastCommit time.Time
	for _, ev := range evs {
		if c, ok := ev.Data.(gateway.CommitEvent); ok && c.Op == "write" {
			writes = append(writes, c.Path)
			lastCommit = ev.Time
		}
	}
	if len(writes) != 201 || !slices.Contains(writes, "/site/README.md") {
		t.Errorf("%d write commits before the hook ran, want the 201 files", len(writes))
	}
	h := evs[len(evs)-1].Data.(gateway.HookEvent)
	got := slices.Clone(h.Paths)
	slices.Sort(got)
	if h.Hook != "php" || h.Result != "ok" || h.ExitCode != 0 || h.PathsTotal != 200 || !slices.Equal(got, wantUser) {
		t.Errorf("hook event: %s %s exit %d, %d paths (total %d)", h.Hook, h.Result, h.ExitCode, len(h.Paths), h.PathsTotal)
	}
	runs := e.recordedRuns(t)
	if len(runs) != 1 {
		t.Fatalf("the hook ran %d times, want once", len(runs))
	}
	stdin := slices.Clone(runs[0])
	slices.Sort(stdin)
	if !slices.Equal(stdin, wantAgent) {
		t.Errorf("the hook's stdin has %d paths, want the 200 PHP files", len(stdin))
	}
	wait := h.Start.Sub(lastCommit)
	t.Logf("hook started %v after the last commit (debounce %v + %v), ran %.1f ms; hook event published %v after the last commit",
		wait.Round(time.Millisecond), debounce, (wait - debounce).Round(time.Microsecond), h.DurationSeconds*1000,
		evs[len(evs)-1].Time.Sub(lastCommit).Round(time.Millisecond))
}

// TestHookNotRunWithoutACommit: a save the hook does not match, an FTP
// upload whose client is killed mid-STOR and an SFTP upload whose
// connection drops run nothing; the next matching save runs the hook with
// its own path only.
func TestHookNotRunWithoutACommit(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	e := startHooked(t, `
hooks:
  - name: php
    match: ["**/*.php"]
    command: [RECORDER]
`, func(c *config.Config) {
		// An FTP data connection's end is also a file's end: only the size
		// lftp announces with ALLO tells a killed client from a finished one.
		c.FTP.CheckAlloSize = true
	})
	a := e.agent(t)
	fc, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Quit()
	if err := fc.Login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("notes.txt", strings.NewReader("not PHP\n")); err != nil {
		t.Fatal(err)
	}

	uploading := func(want bool) {
		t.Helper()
		waitFor(t, fmt.Sprintf("uploads in progress: %v", want), func() bool { return (a.UploadsInProgress() > 0) == want })
	}

	// lftp killed mid-STOR.
	big := filepath.Join(t.TempDir(), "big.php")
	if err := os.WriteFile(big, bytes.Repeat([]byte("<?php // padding\n"), 1<<19), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("lftp", "-c", lftpOpen(e.srv.FTPAddr.String())+"set ftp:use-allo yes; set net:limit-rate 262144; put "+big+" -o killed.php")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C.UTF-8")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	uploading(true)
	cmd.Process.Kill()
	cmd.Wait()
	uploading(false)

	// An SFTP connection dropped mid-upload.
	conn, err := net.Dial("tcp", e.srv.SFTPAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, e.srv.SFTPAddr.String(), &ssh.ClientConfig{User: "alice",
		Auth: []ssh.AuthMethod{ssh.Password("pw")}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	sf, err := sftp.NewClient(client)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sf.Create("dropped.php")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("<?php\n"), 50000)); err != nil {
		t.Fatal(err)
	}
	uploading(true)
	conn.Close() // no close of the file, no goodbye: the cable is gone
	sf.Close()
	client.Close()
	uploading(false)

	if err := fc.Stor("sentinel.php", strings.NewReader("<?php\n")); err != nil {
		t.Fatal(err)
	}
	evs := e.until(t, time.Minute, isHook)
	e.quiet(t, 2*time.Second)
	var commits []string
	for _, ev := range evs {
		if c, ok := ev.Data.(gateway.CommitEvent); ok {
			commits = append(commits, c.Op+" "+c.Path)
		}
	}
	if slices.ContainsFunc(commits, func(s string) bool { return strings.Contains(s, "killed") || strings.Contains(s, "dropped") }) ||
		!slices.Contains(commits, "write /notes.txt") || !slices.Contains(commits, "write /sentinel.php") {
		t.Errorf("commits: %q", commits)
	}
	if h := evs[len(evs)-1].Data.(gateway.HookEvent); !slices.Equal(h.Paths, []string{"/sentinel.php"}) {
		t.Errorf("the hook ran for %q, want the sentinel only", h.Paths)
	}
	if runs := e.recordedRuns(t); len(runs) != 1 || !slices.Equal(runs[0], []string{"alice/sentinel.php"}) {
		t.Errorf("recorded runs %q, want one with the sentinel", runs)
	}
	for _, name := range []string{"killed.php", "dropped.php"} {
		if _, err := os.Stat(filepath.Join(e.root, "alice", name)); err == nil {
			t.Errorf("the aborted %s was committed", name)
		}
	}
}

// TestHookFailuresNeverFailTheUpload: a hook that fails, one that times
// out (killed with its child) and one whose program is missing leave
// their uploads committed; each run is a feed event with its reason and
// counts in the metrics.
func TestHookFailuresNeverFailTheUpload(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	e := startHooked(t, fmt.Sprintf(`
hooks:
  - name: fails
    match: ["**/*.fail"]
    command: ["sh", "-c", "echo broken >&2; exit 3"]
    debounce: 50ms
  - name: hangs
    match: ["**/*.hang"]
    command: ["sh", "-c", "sleep 600 & echo $! > %s; wait"]
    debounce: 50ms
    timeout: 500ms
  - name: missing
    match: ["**/*.missing"]
    command: ["upgate-test-no-such-program"]
    debounce: 50ms
`, pidFile), nil)
	sc, c, err := sftpLogin(e.srv.SFTPAddr.String(), "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	defer c.Close()
	want := map[string]string{}
	for _, name := range []string{"a.fail", "b.hang", "c.missing"} {
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("content of " + name)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
	}
	results := map[string]gateway.HookEvent{}
	for len(results) < 3 {
		evs := e.until(t, time.Minute, isHook)
		h := evs[len(evs)-1].Data.(gateway.HookEvent)
		results[h.Hook] = h
	}
	for hook, w := range map[string]struct{ result, err string }{
		"fails":   {"failed", "exit status 3"},
		"hangs":   {"timeout", "timed out after 500ms: process group killed"},
		"missing": {"start_error", `exec: "upgate-test-no-such-program": executable file not found in $PATH`},
	} {
		h := results[hook]
		if h.Result != w.result || h.Error != w.err {
			t.Errorf("hook %s: %s %q, want %s %q", hook, h.Result, h.Error, w.result, w.err)
		}
		want[hook] = w.result
	}
	if h := results["fails"]; h.ExitCode != 3 || h.Output != "broken\n" {
		t.Errorf("failing hook: exit %d output %q", h.ExitCode, h.Output)
	}
	for _, name := range []string{"a.fail", "b.hang", "c.missing"} {
		if b, err := os.ReadFile(filepath.Join(e.root, "alice", name)); err != nil || string(b) != "content of "+name {
			t.Errorf("%s after its hook failed: %q %v", name, b, err)
		}
	}
	for hook, result := range want {
		line := fmt.Sprintf(`upgate_hook_runs_total{agent="embedded",hook=%q,result=%q} 1`, hook, result)
		if !metric(t, e.srv.AdminAddr.String(), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	if !metric(t, e.srv.AdminAddr.String(), `upgate_hook_duration_seconds_count{agent="embedded",hook="hangs"} 1`) {
		t.Error("no duration observed for the timed-out hook")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "the timed-out hook's child to end", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		i := bytes.LastIndexByte(stat, ')')
		return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
	})
}

// TestHookRunSharedByUsers: on an agent shared by alice and bob, one run
// for both their saves shows each only their own paths, without the
// output (which may name the other's); the whole run is published
// without a user. Commits go to their owners.
func TestHookRunSharedByUsers(t *testing.T) {
	e := startHooked(t, `
hooks:
  - name: php
    match: ["**/*.php"]
    command: ["sh", "-c", "cat"]
    debounce: 1s
`, nil)
	for _, user := range []string{"alice", "bob"} {
		c, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, "pw"); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor(user+".php", strings.NewReader("<?php\n")); err != nil {
			t.Fatal(err)
		}
		c.Quit()
	}
	byUser := map[string]gateway.HookEvent{}
	commits := map[string]string{}
	deadline := time.After(time.Minute)
	for len(byUser) < 3 {
		select {
		case ev := <-e.all:
			switch d := ev.Data.(type) {
			case gateway.HookEvent:
				byUser[ev.User] = d
			case gateway.CommitEvent:
				if d.Op == "write" {
					commits[ev.User] = d.Path
				}
			}
		case <-deadline:
			t.Fatalf("hook events within a minute: %+v", byUser)
		}
	}
	if commits["alice"] != "/alice.php" || commits["bob"] != "/bob.php" || len(commits) != 2 {
		t.Errorf("commits by user: %v", commits)
	}
	for _, u := range []string{"alice", "bob"} {
		if h := byUser[u]; !slices.Equal(h.Paths, []string{"/" + u + ".php"}) || h.Output != "" || h.PathsTotal != 2 {
			t.Errorf("%s's copy of the run: paths %q, output %q, total %d", u, h.Paths, h.Output, h.PathsTotal)
		}
	}
	whole := byUser[""]
	if !slices.Equal(whole.Paths, []string{"alice/alice.php", "bob/bob.php"}) || whole.Output != "alice/alice.php\nbob/bob.php\n" ||
		whole.Event != byUser["alice"].Event {
		t.Errorf("the whole run: %+v", whole)
	}
}

// cutProxy forwards loopback TCP to target; cut closes every forwarded
// connection and refuses new ones until resume.
type cutProxy struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	paused bool
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{lis: lis, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.paused {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *cutProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
}

// TestHookEventsResumeAfterAnOutage: a gateway that loses its remote
// agent resumes its events where it stopped: the run that happened during
// the outage is published once, and the one before is not published
// again.
func TestHookEventsResumeAfterAnOutage(t *testing.T) {
	dir := t.TempDir()
	agentRoot := filepath.Join(dir, "srv")
	if err := os.MkdirAll(filepath.Join(agentRoot, "carol"), 0o755); err != nil {
		t.Fatal(err)
	}
	const token = "outage-token"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := agent.New(agent.Config{Root: agentRoot, Token: token, Logger: slog.New(slog.DiscardHandler),
		Hooks: []hooks.Hook{{Name: "php", Match: []string{"**/*.php"}, Command: []string{"sh", "-c", "cat"}, Debounce: 50 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	actx, stopAgent := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(actx, srv, lis) }()
	t.Cleanup(func() {
		stopAgent()
		<-served
		srv.Close()
	})
	proxy := newCutProxy(t, lis.Addr().String())

	e := startHooked(t, "hooks: []\n", func(c *config.Config) {
		c.Agents["remote"] = config.Agent{Address: proxy.lis.Addr().String(), TokenFile: tokenFile}
		h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
		c.Users = append(c.Users, config.User{Name: "carol", PasswordHash: string(h),
			Mounts: []config.Mount{{Path: "/", Agent: "remote", Root: "carol"}}})
	})
	var carol []feed.Event
	carolHook := func(path string) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			select {
			case ev := <-e.all:
				if ev.User != "carol" {
					continue
				}
				carol = append(carol, ev)
				if h, ok := ev.Data.(gateway.HookEvent); ok && slices.Contains(h.Paths, path) {
					return
				}
			case <-deadline:
				t.Fatalf("no hook run for %s within a minute: %s", path, describeFeed(carol))
			}
		}
	}
	fc, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Login("carol", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("before.php", strings.NewReader("<?php\n")); err != nil {
		t.Fatal(err)
	}
	fc.Quit()
	carolHook("/before.php")

	// The outage: the agent changes a file while no gateway hears it.
	proxy.cut()
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct, err := agentpb.NewAgentEventsClient(cc).Events(ctx, &agentpb.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := afero.WriteFile(backend.NewGRPCFs(ctx, cc, backend.Options{Root: "carol"}), "/during.php", []byte("<?php\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := direct.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetHookRun() != nil {
			break
		}
	}
	proxy.resume()
	carolHook("/during.php")
	e.quiet(t, 3*eventsRetry)
	for {
		select {
		case ev := <-e.all:
			if ev.User == "carol" {
				carol = append(carol, ev)
			}
			continue
		default:
		}
		break
	}
	runs := map[string]int{}
	for _, ev := range carol {
		if h, ok := ev.Data.(gateway.HookEvent); ok {
			runs[strings.Join(h.Paths, ",")]++
		}
	}
	if runs["/before.php"] != 1 || runs["/during.php"] != 1 || len(runs) != 2 {
		t.Errorf("carol's hook runs: %v, want each once: %s", runs, describeFeed(carol))
	}
}

// eventsRetry is the gateway's first reconnect delay of an events stream.
const eventsRetry = time.Second

// TestEventsAPI: /api/events needs the admin token; follow=false sends the
// kept events and ends; user= filters; Last-Event-ID resumes after an
// event; the client prints a failed run with its error and output.
func TestEventsAPI(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte("admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startHooked(t, `
hooks:
  - name: broken
    match: ["**/*.php"]
    command: ["sh", "-c", "echo line one; echo 'PHP Fatal error: nope' >&2; exit 255"]
    debounce: 50ms
`, func(c *config.Config) { c.Admin.TokenFile = tokenFile })
	for _, user := range []string{"alice", "bob"} {
		c, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, "pw"); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor(user+".php", strings.NewReader("<?php\n")); err != nil {
			t.Fatal(err)
		}
		c.Quit()
		waitFor(t, user+"'s hook run", func() bool { // one run each
			for _, ev := range e.srv.Gateway.Feed().Recent(0, nil) {
				if ev.User == user && ev.Kind == gateway.KindHook {
					return true
				}
			}
			return false
		})
	}
	base := "http://" + e.srv.AdminAddr.String() + "/api/events"
	get := func(query, lastID, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+query, nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("?follow=false", "", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	code, body := get("?follow=false&user=bob", "", "admin-secret")
	if code != http.StatusOK || strings.Contains(body, "alice") || !strings.Contains(body, "event: hook\n") || !strings.Contains(body, `"path":"/bob.php"`) {
		t.Errorf("bob's events: %d\n%s", code, body)
	}
	var lastID string
	for _, l := range strings.Split(body, "\n") {
		if id, ok := strings.CutPrefix(l, "id: "); ok {
			lastID = id
		}
	}
	if _, after := get("?follow=false&user=bob", lastID, "admin-secret"); strings.Contains(after, "data:") {
		t.Errorf("after the last event (Last-Event-ID %s): %q", lastID, after)
	}
	if code, _ := get("?follow=maybe", "", "admin-secret"); code != http.StatusBadRequest {
		t.Errorf("follow=maybe: %d", code)
	}

	var out strings.Builder
	c := &admin.Client{Addr: e.srv.AdminAddr.String(), Token: "admin-secret"}
	if err := c.Events(context.Background(), admin.EventsOptions{User: "alice"}, func(ev admin.Event) error { return admin.WriteEvent(&out, ev) }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice     commit  write   /alice.php  6B  agent=embedded\n",
		"alice     hook    broken  failed  exit=255", "1 paths  agent=embedded\n",
		"    error: exit status 255\n", "    | line one\n", "    | PHP Fatal error: nope\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("upgate events output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "bob") {
		t.Errorf("alice's events show bob's:\n%s", out.String())
	}
}
