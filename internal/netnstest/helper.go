package netnstest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Helper is a client process running inside a namespace: the test binary
// itself, re-run with -test.run selecting a helper "test" that plays the
// client and prints READY once it reached the state the case needs.
type Helper struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser // the helper's stdin; closing it may ask it to quit
	Out   *ReadyWriter   // its stdout and stderr
	Done  chan struct{}  // closed when the process has exited
	Err   error          // Wait's result, once Done is closed
}

// ReadyWriter collects a helper's output and notices READY.
type ReadyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

// Write records p and closes Ready once a line READY has been written.
func (w *ReadyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("READY\n")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// Ready is closed once the helper has printed READY.
func (w *ReadyWriter) Ready() <-chan struct{} { return w.ready }

// String returns all the helper has written so far.
func (w *ReadyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// StartHelper runs the test binary inside n as `-test.run=^test$`, with env
// added to the test's environment, and waits for it to print READY (30 s
// at most). It is killed in t.Cleanup, which logs its output if t failed.
func (n *Netns) StartHelper(t *testing.T, test string, env ...string) *Helper {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.Name, os.Args[0], "-test.run=^"+test+"$", "-test.timeout=15m")
	cmd.Env = append(os.Environ(), env...)
	h := &Helper{Cmd: cmd, Out: &ReadyWriter{ready: make(chan struct{})}, Done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = h.Out, h.Out
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.Stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		h.Err = cmd.Wait()
		close(h.Done)
	}()
	t.Cleanup(func() {
		h.Kill(t)
		if t.Failed() {
			t.Logf("helper output:\n%s", h.Out)
		}
	})
	select {
	case <-h.Out.Ready():
	case <-h.Done:
		t.Fatalf("helper client exited before READY: %v\n%s", h.Err, h.Out)
	case <-time.After(30 * time.Second):
		t.Fatalf("helper client not READY after 30s:\n%s", h.Out)
	}
	return h
}

// Kill kills the helper (`ip netns exec` execs it, so this is the client
// itself) and waits for it.
func (h *Helper) Kill(t *testing.T) {
	t.Helper()
	select {
	case <-h.Done:
		return
	default:
	}
	_ = h.Cmd.Process.Kill()
	select {
	case <-h.Done:
	case <-time.After(20 * time.Second):
		t.Errorf("helper client %d did not exit after SIGKILL", h.Cmd.Process.Pid)
	}
}

// BlockForever blocks the calling goroutine until the process is killed
// (sleeping, so the runtime never takes it for a deadlock).
func BlockForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// StallingReader yields Left bytes, then prints READY and blocks for good:
// the body of an upload that stalls midway.
type StallingReader struct{ Left int }

// Read fills p with the next bytes, or, once Left is used up, prints READY
// and never returns.
func (r *StallingReader) Read(p []byte) (int, error) {
	if r.Left == 0 {
		fmt.Println("READY")
		BlockForever()
	}
	n := min(len(p), r.Left)
	for i := range p[:n] {
		p[i] = byte(i)
	}
	r.Left -= n
	return n, nil
}

// WaitUntil polls cond every 20 ms until it holds or bound passes (then
// it fails t with what), and returns how long it took.
func WaitUntil(t *testing.T, bound time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > bound {
			t.Fatalf("after %v: %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(begin)
}

// DirState is a directory's files: name -> size, sha256 and mtime.
func DirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, de := range ents {
		data, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := de.Info()
		out[de.Name()] = fmt.Sprintf("%d bytes, sha256 %x, mtime %s", len(data), sha256.Sum256(data), fi.ModTime().UTC().Format(time.RFC3339Nano))
	}
	return out
}

// SameState fails t for every file of want that is gone or changed in
// got, and for every file of got that want lacks; what says when.
func SameState(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: %s is gone", what, name)
		} else if g != w {
			t.Errorf("%s: %s changed: %s, was %s", what, name, g, w)
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: new file %s (%s)", what, name, g)
		}
	}
}
