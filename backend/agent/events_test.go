package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// hookedAgent is a real agent with hooks on loopback TCP, and a
// connection to it.
type hookedAgent struct {
	dir    string
	srv    *agent.Server
	cc     *grpc.ClientConn
	events agentpb.AgentEventsClient
}

const hookToken = "hooks-test-token"

// startHooked serves a fresh directory with hs until the test ends.
func startHooked(t *testing.T, hs []hooks.Hook) *hookedAgent {
	t.Helper()
	dir := t.TempDir()
	srv, err := agent.New(agent.Config{Root: dir, Token: hookToken, Hooks: hs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := agent.Serve(ctx, srv, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: hookToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		wg.Wait()
		srv.Close()
	})
	return &hookedAgent{dir: dir, srv: srv, cc: cc, events: agentpb.NewAgentEventsClient(cc)}
}

// eventStream reads an Events stream in the background.
type eventStream struct {
	hello *agentpb.Hello
	ch    chan *agentpb.AgentEvent
	err   chan error
}

func (a *hookedAgent) subscribe(t *testing.T, req *agentpb.EventsRequest) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := a.events.Events(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil || first.GetHello() == nil {
		t.Fatalf("first event: %v %v, want a Hello", first, err)
	}
	s := &eventStream{hello: first.GetHello(), ch: make(chan *agentpb.AgentEvent, 10000), err: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ev, err := st.Recv()
			if err != nil {
				s.err <- err
				return
			}
			s.ch <- ev
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// next returns the next event, failing after d.
func (s *eventStream) next(t *testing.T, d time.Duration) *agentpb.AgentEvent {
	t.Helper()
	select {
	case ev := <-s.ch:
		return ev
	case err := <-s.err:
		t.Fatalf("events stream ended: %v", err)
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return nil
}

// marked makes a directory /marker through fsys and collects the events
// up to its Mkdir's: everything the calls before it caused, in order.
func (s *eventStream) marked(t *testing.T, fsys *backend.GRPCFs) []*agentpb.AgentEvent {
	t.Helper()
	if err := fsys.Mkdir("/marker", 0o755); err != nil {
		t.Fatal(err)
	}
	return s.until(t, isChange(agentpb.ChangeKind_CHANGE_KIND_MKDIR, "marker"))
}

// until collects events up to and including the first that stop accepts.
func (s *eventStream) until(t *testing.T, stop func(*agentpb.AgentEvent) bool) []*agentpb.AgentEvent {
	t.Helper()
	var out []*agentpb.AgentEvent
	for {
		ev := s.next(t, 30*time.Second)
		out = append(out, ev)
		if stop(ev) {
			return out
		}
	}
}

func isChange(kind agentpb.ChangeKind, p string) func(*agentpb.AgentEvent) bool {
	return func(ev *agentpb.AgentEvent) bool {
		c := ev.GetChange()
		return c != nil && c.GetKind() == kind && string(c.GetPath()) == p
	}
}

func isHookRun(ev *agentpb.AgentEvent) bool { return ev.GetHookRun() != nil }

// describe renders events for failure messages.
func describe(evs []*agentpb.AgentEvent) string {
	var b strings.Builder
	for _, ev := range evs {
		switch {
		case ev.GetChange() != nil:
			c := ev.GetChange()
			b.WriteString(strings.TrimPrefix(c.GetKind().String(), "CHANGE_KIND_") + " " + string(c.GetPath()) + "; ")
		case ev.GetHookRun() != nil:
			b.WriteString("HOOK " + ev.GetHookRun().GetHook() + "; ")
		}
	}
	return b.String()
}

// TestEventsReportCommitsAndHookRuns: committed uploads, renames,
// mkdirs and deletes are events, in order, with size and mtime; an
// aborted upload is none and runs no hook; the hook's run follows the
// changes it was given.
func TestEventsReportCommitsAndHookRuns(t *testing.T) {
	a := startHooked(t, []hooks.Hook{{Name: "php", Match: []string{"**/*.php"}, On: []hooks.Kind{hooks.Write, hooks.Rename, hooks.Delete},
		// The debounce covers the whole sequence below, the wait for the
		// aborted upload's end included, even under -race on a loaded
		// machine: at 200 ms the window can close before the DELETE (the test
		// failed once under parallel -race load; that is the likely cause).
		Command: []string{"sh", "-c", "cat; echo done"}, Debounce: 2 * time.Second}})
	if err := os.Mkdir(filepath.Join(a.dir, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	st := a.subscribe(t, &agentpb.EventsRequest{})
	if st.hello.GetAfter() != 0 || !slices.Equal(st.hello.GetHooks(), []string{"php"}) {
		t.Errorf("hello %v", st.hello)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{Root: "alice"})
	for range 2 { // the second (mkdir -p of a directory) changes nothing
		if err := fsys.MkdirAll("/app", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Unix(1700000000, 0)
	write := func(name, content string) {
		t.Helper()
		f, err := fsys.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("/app/a.php", "<?php echo 1;")
	if err := fsys.Chtimes("/app/a.php", mtime, mtime); err != nil {
		t.Fatal(err)
	}
	write("/app/b.txt.tmp", "hello")
	if err := fsys.Rename("/app/b.txt.tmp", "/app/b.php"); err != nil {
		t.Fatal(err)
	}

	// An aborted upload: its stream ends without a close.
	actx, abort := context.WithCancel(ctx)
	afs := backend.NewGRPCFs(actx, a.cc, backend.Options{Root: "alice"})
	f, err := afs.Create("/app/aborted.php")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("<?php half")); err != nil {
		t.Fatal(err)
	}
	abort()
	f.Close()
	deadline := time.Now().Add(settle)
	for a.srv.UploadsInProgress() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the aborted upload is still in progress")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := fsys.Remove("/app/b.php"); err != nil {
		t.Fatal(err)
	}

	evs := st.until(t, isHookRun)
	got := describe(evs)
	want := "MKDIR alice/app; WRITE alice/app/a.php; WRITE alice/app/b.txt.tmp; RENAME alice/app/b.php; DELETE alice/app/b.php; HOOK php; "
	if got != want {
		t.Fatalf("events: %s\nwant:   %s", got, want)
	}
	a1 := evs[1].GetChange()
	if a1.GetSize() != int64(len("<?php echo 1;")) || a1.GetMode()&0o777 == 0 || a1.GetMtimeUnixNano() == 0 {
		t.Errorf("write event: %v", a1)
	}
	if r := evs[3].GetChange(); string(r.GetFrom()) != "alice/app/b.txt.tmp" || r.GetSize() != 5 {
		t.Errorf("rename event: %v", r)
	}
	for i, ev := range evs {
		if ev.GetBootId() != a.srv.BootID() || ev.GetSeq() != uint64(i+1) || ev.GetTimeUnixNano() == 0 {
			t.Errorf("event %d: boot %s seq %d", i, ev.GetBootId(), ev.GetSeq())
		}
	}
	run := evs[len(evs)-1].GetHookRun()
	var paths []string
	for _, p := range run.GetPaths() {
		paths = append(paths, string(p))
	}
	if want := []string{"alice/app/a.php", "alice/app/b.php"}; !slices.Equal(paths, want) || run.GetPathsTotal() != 2 {
		t.Errorf("hook paths %q (total %d), want %q: the aborted upload must not be among them", paths, run.GetPathsTotal(), want)
	}
	if run.GetResult() != agentpb.HookResult_HOOK_RESULT_OK || run.GetExitCode() != 0 ||
		string(run.GetOutput()) != "alice/app/a.php\nalice/app/b.php\ndone\n" || run.GetDurationNanos() <= 0 {
		t.Errorf("hook run: %v", run)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "alice/app/aborted.php")); err == nil {
		t.Error("the aborted upload was committed")
	}
}

// TestEventsResumeWithoutReplay: a stream resumed with the boot id and
// the last seq gets what it missed and nothing it saw; one without a
// resume point gets only new events; one with another boot id (the agent
// restarted) gets all of this boot's.
func TestEventsResumeWithoutReplay(t *testing.T) {
	a := startHooked(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{})
	mkdir := func(name string) {
		t.Helper()
		if err := fsys.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st := a.subscribe(t, &agentpb.EventsRequest{})
	mkdir("/d1")
	mkdir("/d2")
	seen := st.until(t, isChange(agentpb.ChangeKind_CHANGE_KIND_MKDIR, "d2"))
	last := seen[len(seen)-1]
	mkdir("/d3") // while "disconnected"

	resumed := a.subscribe(t, &agentpb.EventsRequest{BootId: last.GetBootId(), Since: last.GetSeq()})
	if resumed.hello.GetAfter() != last.GetSeq() || resumed.hello.GetMissed() != 0 {
		t.Errorf("resumed hello: %v", resumed.hello)
	}
	if ev := resumed.next(t, 10*time.Second); string(ev.GetChange().GetPath()) != "d3" || ev.GetSeq() != last.GetSeq()+1 {
		t.Errorf("first event after resuming: %v, want d3's", ev)
	}

	fresh := a.subscribe(t, &agentpb.EventsRequest{})
	if fresh.hello.GetAfter() != 3 {
		t.Errorf("fresh hello after %d, want 3", fresh.hello.GetAfter())
	}
	restarted := a.subscribe(t, &agentpb.EventsRequest{BootId: "0123456789abcdef", Since: 99})
	mkdir("/d4")
	if ev := fresh.next(t, 10*time.Second); string(ev.GetChange().GetPath()) != "d4" {
		t.Errorf("a stream without a resume point got %v first, want d4 (nothing old)", ev)
	}
	var paths []string
	for range 4 {
		paths = append(paths, string(restarted.next(t, 10*time.Second).GetChange().GetPath()))
	}
	if !slices.Equal(paths, []string{"d1", "d2", "d3", "d4"}) {
		t.Errorf("a stream from another boot got %q, want this boot's events from seq 1", paths)
	}
}

// TestEventsNeedTheToken: the events service has the Agent service's
// token check.
func TestEventsNeedTheToken(t *testing.T) {
	a := startHooked(t, nil)
	for _, tok := range []string{"", "wrong"} {
		cc, err := backend.Dial(a.cc.Target(), backend.DialOptions{Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := agentpb.NewAgentEventsClient(cc).Events(ctx, &agentpb.EventsRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		cancel()
		cc.Close()
		if err == nil || !strings.Contains(err.Error(), "missing or wrong token") {
			t.Errorf("token %q: %v", tok, err)
		}
	}
}

// TestEventsJoinAfterCommit: a handle joined to an upload (the session's
// second descriptor on a file it is saving) writes into the upload's
// data, which the upload's commit announces; what the join writes after
// that commit changes the committed file, and the join's close announces
// it with the file's new state. A join that wrote only before the commit
// announces nothing more.
func TestEventsJoinAfterCommit(t *testing.T) {
	a := startHooked(t, nil)
	st := a.subscribe(t, &agentpb.EventsRequest{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{})
	write := func(f interface{ Write([]byte) (int, error) }, s string) {
		t.Helper()
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	closeFile := func(f interface{ Close() error }) {
		t.Helper()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	joinOf := func(name string) (upload, join interface {
		Write([]byte) (int, error)
		Close() error
	}) {
		t.Helper()
		f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		u, ok := f.(backend.Upload)
		if !ok || !u.Pending() {
			t.Fatalf("%s: %T is no upload in progress", name, f)
		}
		j, err := u.Reopen(os.O_WRONLY | os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		return f, j
	}

	// Written after the commit: two events, the second with the new size.
	u, j := joinOf("/late.txt")
	write(u, "first\n")
	closeFile(u)
	write(j, "second\n")
	closeFile(j)
	// Written before the commit only: one event.
	u, j = joinOf("/early.txt")
	write(j, "joined\n")
	closeFile(j)
	closeFile(u)

	evs := st.marked(t, fsys)
	if got, want := describe(evs), "WRITE late.txt; WRITE late.txt; WRITE early.txt; MKDIR marker; "; got != want {
		t.Fatalf("events: %s\nwant:   %s", got, want)
	}
	if got, want := evs[0].GetChange().GetSize(), int64(len("first\n")); got != want {
		t.Errorf("commit's event: size %d, want %d", got, want)
	}
	if got, want := evs[1].GetChange().GetSize(), int64(len("first\nsecond\n")); got != want {
		t.Errorf("join's event: size %d, want %d", got, want)
	}
	for name, want := range map[string]string{"late.txt": "first\nsecond\n", "early.txt": "joined\n"} {
		if got, err := os.ReadFile(filepath.Join(a.dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestEventsJoinAfterMove: a join of an upload the session then renamed
// (MoveOp: SFTP RENAME of the file being saved) announces its late write
// under the upload's new name, where the commit put the file; it named
// the old one, which no longer exists. (A review.)
func TestEventsJoinAfterMove(t *testing.T) {
	a := startHooked(t, nil)
	st := a.subscribe(t, &agentpb.EventsRequest{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{})
	f, err := fsys.OpenFile("/a.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := f.(backend.Upload)
	if !ok {
		t.Fatalf("%T is no upload", f)
	}
	j, err := u.Reopen(os.O_WRONLY | os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Move("/b.txt"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { _, err := f.Write([]byte("first\n")); return err },
		f.Close,
		func() error { _, err := j.Write([]byte("second\n")); return err },
		j.Close,
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	evs := st.marked(t, fsys)
	if got, want := describe(evs), "WRITE b.txt; WRITE b.txt; MKDIR marker; "; got != want {
		t.Fatalf("events: %s\nwant:   %s", got, want)
	}
	if got, want := evs[1].GetChange().GetSize(), int64(len("first\nsecond\n")); got != want {
		t.Errorf("the join's event: size %d, want %d", got, want)
	}
}

// TestEventsReadOnlyOpenChanges: a read-only open that truncates or
// creates a file (SFTP's OPEN with TRUNC or CREAT and no WRITE, open(2)
// O_RDONLY with them, as sftp-server opens it) changes it at the open and
// commits nothing at its close: the change is announced at the open. One
// that creates nothing (the file exists) announces nothing. (A review.)
func TestEventsReadOnlyOpenChanges(t *testing.T) {
	a := startHooked(t, nil)
	for _, name := range []string{"t.txt", "kept.txt"} {
		if err := os.WriteFile(filepath.Join(a.dir, name), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := a.subscribe(t, &agentpb.EventsRequest{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, a.cc, backend.Options{})
	for _, tc := range []struct {
		name string
		flag int
	}{{"/t.txt", os.O_RDONLY | os.O_TRUNC}, {"/c.txt", os.O_RDONLY | os.O_CREATE}, {"/kept.txt", os.O_RDONLY | os.O_CREATE}} {
		f, err := fsys.OpenFile(tc.name, tc.flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	evs := st.marked(t, fsys)
	if got, want := describe(evs), "WRITE t.txt; WRITE c.txt; MKDIR marker; "; got != want {
		t.Fatalf("events: %s\nwant:   %s", got, want)
	}
	if got := evs[0].GetChange().GetSize(); got != 0 {
		t.Errorf("the truncation's event: size %d, want 0", got)
	}
	for name, want := range map[string]string{"t.txt": "", "c.txt": "", "kept.txt": "12345"} {
		if got, err := os.ReadFile(filepath.Join(a.dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}
