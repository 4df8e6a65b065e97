package hooks_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agent/hooks"
)

// recorder is a hook command: a shell script that writes what it was given
// (stdin, UPGATE_ variables, its working directory) into a new directory
// under $RUNS per run, then sleeps $SLEEP seconds if set.
const recorder = `#!/bin/sh
d="$RUNS/$(date +%s%N)-$$"
mkdir "$d"
cat > "$d/stdin"
printf '%s' "$UPGATE_CHANGED" > "$d/changed"
printf '%s\n' "$UPGATE_HOOK" "$UPGATE_CHANGED_COUNT" "$UPGATE_CHANGED_TRUNCATED" "$UPGATE_ROOT" "$(pwd)" "$FOO" > "$d/env"
touch "$d/started"
if [ -n "$SLEEP" ]; then sleep "$SLEEP"; fi
echo "done $UPGATE_CHANGED_COUNT"
`

// recorded is one run as the recorder script saw it.
type recorded struct {
	stdin, changed []string
	env            []string // hook, count, truncated, root, pwd, FOO
}

type fixture struct {
	root, runs string
	script     string
	ran        chan hooks.Run
	r          *hooks.Runner
}

// newFixture starts a Runner over a fresh root with hs, where a command
// of "RECORDER" is replaced by the recorder script.
func newFixture(t *testing.T, hs ...hooks.Hook) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir(), runs: t.TempDir(), ran: make(chan hooks.Run, 100)}
	f.script = filepath.Join(t.TempDir(), "record.sh")
	if err := os.WriteFile(f.script, []byte(recorder), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range hs {
		if len(hs[i].Command) == 1 && hs[i].Command[0] == "RECORDER" {
			hs[i].Command = []string{f.script}
		}
		env := map[string]string{"RUNS": f.runs}
		for k, v := range hs[i].Env {
			env[k] = v
		}
		hs[i].Env = env
	}
	r, err := hooks.NewRunner(hs, hooks.Options{Root: f.root, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnRun: func(run hooks.Run) { f.ran <- run }})
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	t.Cleanup(r.Close)
	return f
}

// next waits for the next run, for at most d.
func (f *fixture) next(t *testing.T, d time.Duration) hooks.Run {
	t.Helper()
	select {
	case run := <-f.ran:
		return run
	case <-time.After(d):
		t.Fatalf("no hook run within %v", d)
		return hooks.Run{}
	}
}

// none checks that no run comes within d.
func (f *fixture) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case run := <-f.ran:
		t.Fatalf("unexpected run of %s with %d paths (%v)", run.Hook, len(run.Paths), run.Paths)
	case <-time.After(d):
	}
}

// started reports whether a run has read its input (and now sleeps).
func (f *fixture) started(t *testing.T) bool {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(f.runs, "*", "started"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m) > 0
}

// recordedRuns reads what the recorder saw, oldest run first.
func (f *fixture) recordedRuns(t *testing.T) []recorded {
	t.Helper()
	ents, err := os.ReadDir(f.runs)
	if err != nil {
		t.Fatal(err)
	}
	var out []recorded
	for _, e := range ents { // sorted by name: start time first
		read := func(name string) []string {
			b, err := os.ReadFile(filepath.Join(f.runs, e.Name(), name))
			if err != nil {
				t.Fatal(err)
			}
			s := strings.TrimSuffix(string(b), "\n")
			if s == "" {
				return nil
			}
			return strings.Split(s, "\n")
		}
		out = append(out, recorded{stdin: read("stdin"), changed: read("changed"), env: read("env")})
	}
	return out
}

func phpPaths(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("app/d%d/f%03d.php", i%7, i))
	}
	return out
}

// TestDebounceRunsOnceWithAllPaths: 200 matching changes in a burst run
// the hook once, with all 200 paths on stdin and in UPGATE_CHANGED, in
// the agent root; changes it does not match, excludes, or did not ask for
// add nothing.
func TestDebounceRunsOnceWithAllPaths(t *testing.T) {
	const debounce = 300 * time.Millisecond
	f := newFixture(t, hooks.Hook{Name: "php", Match: []string{"**/*.php"}, Exclude: []string{"vendor/**"},
		Command: []string{"RECORDER"}, Debounce: debounce, Env: map[string]string{"FOO": "bar baz"}})
	want := phpPaths(200)
	for i, p := range want {
		f.r.Changed(hooks.Write, p)
		if i%50 == 0 {
			f.r.Changed(hooks.Write, "README.md")            // no match
			f.r.Changed(hooks.Write, "vendor/x/y.php")       // excluded
			f.r.Changed(hooks.Delete, "app/gone.php")        // not asked for
			f.r.Changed(hooks.Mkdir, "app/newdir.php")       // not asked for
			f.r.Changed(hooks.Rename, want[0])               // a duplicate
			f.r.Changed(hooks.Write, strings.Repeat("x", 0)) // the root: no match
		}
	}
	run := f.next(t, 30*time.Second)
	f.none(t, 3*debounce)
	if run.Hook != "php" || run.Result != hooks.OK || run.ExitCode != 0 || run.Err != "" || run.Dropped != 0 {
		t.Errorf("run: %+v", run)
	}
	if !slices.Equal(run.Paths, want) {
		t.Errorf("run paths: %d, want the 200 in order of change", len(run.Paths))
	}
	if got := strings.TrimSpace(string(run.Output)); got != "done 200" {
		t.Errorf("output %q", got)
	}
	recs := f.recordedRuns(t)
	if len(recs) != 1 {
		t.Fatalf("the command ran %d times, want once", len(recs))
	}
	rec := recs[0]
	if !slices.Equal(rec.stdin, want) {
		t.Errorf("stdin: %d lines, want the 200 paths", len(rec.stdin))
	}
	if !slices.Equal(rec.changed, want) {
		t.Errorf("UPGATE_CHANGED: %d lines, want the 200 paths", len(rec.changed))
	}
	root, _ := filepath.EvalSymlinks(f.root)
	if wantEnv := []string{"php", "200", "0", f.root, root, "bar baz"}; !slices.Equal(rec.env, wantEnv) {
		t.Errorf("hook, count, truncated, UPGATE_ROOT, pwd, FOO = %q, want %q", rec.env, wantEnv)
	}
}

// TestChangedTruncatedInEnvironment: paths beyond MaxEnvBytes are on
// stdin only, and UPGATE_CHANGED_TRUNCATED says so.
func TestChangedTruncatedInEnvironment(t *testing.T) {
	f := newFixture(t, hooks.Hook{Name: "all", Match: []string{"**"}, Command: []string{"RECORDER"}, Debounce: 100 * time.Millisecond})
	var want []string
	for i := range 1000 {
		want = append(want, fmt.Sprintf("%s/%04d.txt", strings.Repeat("d", 90), i))
	}
	for _, p := range want {
		f.r.Changed(hooks.Write, p)
	}
	f.next(t, 30*time.Second)
	rec := f.recordedRuns(t)[0]
	if !slices.Equal(rec.stdin, want) {
		t.Errorf("stdin: %d lines, want all 1000", len(rec.stdin))
	}
	if n := len(rec.changed); n == 0 || n >= 1000 || !slices.Equal(rec.changed, want[:n]) {
		t.Errorf("UPGATE_CHANGED: %d paths, want a prefix of them", n)
	}
	if size := len(strings.Join(rec.changed, "\n")); size > hooks.MaxEnvBytes {
		t.Errorf("UPGATE_CHANGED is %d bytes", size)
	}
	if rec.env[1] != "1000" || rec.env[2] != "1" {
		t.Errorf("count %s, truncated %s; want 1000 and 1", rec.env[1], rec.env[2])
	}
}

// TestBurstDuringRunQueuesOneRun: changes that arrive while the hook runs
// give exactly one more run, with their union, after it: never a
// concurrent one.
func TestBurstDuringRunQueuesOneRun(t *testing.T) {
	const debounce = 100 * time.Millisecond
	f := newFixture(t, hooks.Hook{Name: "slow", Match: []string{"**/*.php"}, Command: []string{"RECORDER"},
		Debounce: debounce, Env: map[string]string{"SLEEP": "1.5"}})
	f.r.Changed(hooks.Write, "a.php")
	// Wait until the first run has started (the recorder has read stdin).
	deadline := time.Now().Add(20 * time.Second)
	for !f.started(t) {
		if time.Now().After(deadline) {
			t.Fatal("the first run did not start within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	burst := []string{"b.php", "c.php", "a.php", "b.php", "d.php"}
	for _, p := range burst {
		f.r.Changed(hooks.Write, p)
		time.Sleep(10 * time.Millisecond)
	}
	first := f.next(t, 30*time.Second)
	second := f.next(t, 30*time.Second)
	f.none(t, 5*debounce)
	if !slices.Equal(first.Paths, []string{"a.php"}) {
		t.Errorf("first run: %v", first.Paths)
	}
	if want := []string{"b.php", "c.php", "a.php", "d.php"}; !slices.Equal(second.Paths, want) {
		t.Errorf("follow-up run: %v, want the union of the burst %v", second.Paths, want)
	}
	if !second.Start.After(first.Start.Add(first.Duration)) {
		t.Errorf("the follow-up started at %v, before the first run ended at %v", second.Start, first.Start.Add(first.Duration))
	}
	if recs := f.recordedRuns(t); len(recs) != 2 {
		t.Errorf("the command ran %d times, want 2", len(recs))
	}
}

// TestTimeoutKillsProcessGroup: a hook that outlives its timeout is
// killed with the children it started.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	f := newFixture(t, hooks.Hook{Name: "hang", Match: []string{"**"}, Debounce: 10 * time.Millisecond, Timeout: 500 * time.Millisecond,
		Command: []string{"sh", "-c", `sleep 600 & echo $! > "$PIDFILE"; echo started; wait`},
		Env:     map[string]string{"PIDFILE": pidFile}})
	f.r.Changed(hooks.Write, "x")
	run := f.next(t, 30*time.Second)
	if run.Result != hooks.Timeout || run.ExitCode != -1 || !strings.Contains(run.Err, "timed out after 500ms") {
		t.Errorf("run: result %s exit %d err %q", run.Result, run.ExitCode, run.Err)
	}
	if !bytes.Contains(run.Output, []byte("started")) {
		t.Errorf("output %q", run.Output)
	}
	if run.Duration > 20*time.Second {
		t.Errorf("the run took %v: the kill did not end it", run.Duration)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// waitGone waits until pid no longer runs: gone, or a zombie waiting for
// a reaper that is not ours.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// Field 3, after "pid (comm)", is the state.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d of the timed-out hook still runs: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailuresAreReported: a non-zero exit and a missing binary are
// results with their reason, and the runner goes on.
func TestFailuresAreReported(t *testing.T) {
	f := newFixture(t,
		hooks.Hook{Name: "fails", Match: []string{"*.fail"}, Debounce: 10 * time.Millisecond,
			Command: []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"}},
		hooks.Hook{Name: "missing", Match: []string{"*.missing"}, Debounce: 10 * time.Millisecond,
			Command: []string{"upgate-test-no-such-program", "arg"}},
		hooks.Hook{Name: "missing-path", Match: []string{"*.missingpath"}, Debounce: 10 * time.Millisecond,
			Command: []string{"./bin/no-such-program"}},
	)
	f.r.Changed(hooks.Write, "a.fail")
	run := f.next(t, 30*time.Second)
	if run.Hook != "fails" || run.Result != hooks.Failed || run.ExitCode != 3 || run.Err != "exit status 3" ||
		!bytes.Contains(run.Output, []byte("to-stdout\n")) || !bytes.Contains(run.Output, []byte("to-stderr\n")) {
		t.Errorf("failing hook: %+v (output %q)", run, run.Output)
	}
	f.r.Changed(hooks.Write, "a.missing")
	run = f.next(t, 30*time.Second)
	if run.Hook != "missing" || run.Result != hooks.StartError || run.ExitCode != -1 ||
		!strings.Contains(run.Err, `"upgate-test-no-such-program": executable file not found`) {
		t.Errorf("missing program: %+v", run)
	}
	f.r.Changed(hooks.Write, "a.missingpath")
	run = f.next(t, 30*time.Second)
	if run.Result != hooks.StartError || !strings.Contains(run.Err, "no such file or directory") {
		t.Errorf("missing program by path: %+v", run)
	}
	// The runner still runs hooks after failures.
	f.r.Changed(hooks.Write, "b.fail")
	if run := f.next(t, 30*time.Second); run.Hook != "fails" || !slices.Equal(run.Paths, []string{"b.fail"}) {
		t.Errorf("after failures: %+v", run)
	}
}

// TestCloseKillsRunningHook: Close ends a running hook's process group
// and returns; the run is reported canceled.
func TestCloseKillsRunningHook(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	f := newFixture(t, hooks.Hook{Name: "hang", Match: []string{"**"}, Debounce: 10 * time.Millisecond,
		Command: []string{"sh", "-c", `sleep 600 & echo $! > "$PIDFILE"; wait`}, Env: map[string]string{"PIDFILE": pidFile}})
	f.r.Changed(hooks.Write, "x")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hook did not start within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		f.r.Close()
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return within 20 s")
	}
	if run := f.next(t, time.Second); run.Result != hooks.Canceled {
		t.Errorf("run: %+v", run)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitGone(t, pid)
	f.r.Changed(hooks.Write, "y") // after Close: ignored
	f.none(t, 200*time.Millisecond)
}

func TestNilRunner(t *testing.T) {
	var r *hooks.Runner
	r.Changed(hooks.Write, "x")
	r.Close()
	if r.Hooks() != nil {
		t.Error("a nil runner has hooks")
	}
}
