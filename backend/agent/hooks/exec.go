package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// outputGrace bounds how long a finished or killed command's output may
// stay open (a background process it left holding stdout): then it is
// closed and the run ends.
const outputGrace = 2 * time.Second

// execute runs h once for paths: in its own process group, with cwd at
// root, the paths on stdin and in the environment, killed with its group
// when the timeout passes or ctx ends.
func execute(ctx context.Context, h *Hook, root string, paths []string, dropped int) Run {
	run := Run{Hook: h.Name, Paths: paths, Dropped: dropped, ExitCode: -1, Start: time.Now()}
	tctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()

	cmd := exec.CommandContext(tctx, h.Command[0], h.Command[1:]...)
	cmd.Dir = root
	cmd.Env = environ(h, root, paths, dropped)
	var stdin strings.Builder
	for _, p := range paths {
		stdin.WriteString(p)
		stdin.WriteByte('\n')
	}
	cmd.Stdin = strings.NewReader(stdin.String())
	out := &tail{max: OutputTail}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a timeout kills whatever it
	// started too (php artisan's children, a sh -c pipeline).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var killed atomic.Bool
	cmd.Cancel = func() error {
		killed.Store(true)
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = outputGrace

	if err := cmd.Start(); err != nil {
		run.Duration = time.Since(run.Start)
		run.Result, run.Err = StartError, err.Error()
		return run
	}
	err := cmd.Wait()
	run.Duration = time.Since(run.Start)
	run.Output = out.bytes()
	if ps := cmd.ProcessState; ps != nil {
		run.ExitCode = ps.ExitCode()
	}
	switch {
	case killed.Load() && ctx.Err() != nil:
		run.Result, run.Err = Canceled, "the agent stopped: process group killed"
	case killed.Load():
		run.Result, run.Err = Timeout, fmt.Sprintf("timed out after %v: process group killed", h.timeout())
	case err == nil:
		run.Result = OK
	case errors.Is(err, exec.ErrWaitDelay) && run.ExitCode == 0:
		run.Result = OK
		run.Err = fmt.Sprintf("output still open %v after exit (a background process holds it): closed", outputGrace)
	default:
		run.Result, run.Err = Failed, err.Error()
	}
	return run
}

// environ is the command's environment: the agent's, then the hook's Env,
// then the UPGATE_ variables.
func environ(h *Hook, root string, paths []string, dropped int) []string {
	env := os.Environ()
	for k, v := range h.Env {
		env = append(env, k+"="+v)
	}
	var changed strings.Builder
	truncated := "0"
	for i, p := range paths {
		if changed.Len()+len(p)+1 > MaxEnvBytes {
			truncated = "1"
			break
		}
		if i > 0 {
			changed.WriteByte('\n')
		}
		changed.WriteString(p)
	}
	if dropped > 0 {
		truncated = "1"
	}
	// exec keeps the last value of a duplicated name: these win.
	return append(env,
		"UPGATE_HOOK="+h.Name,
		"UPGATE_ROOT="+root,
		"UPGATE_CHANGED="+changed.String(),
		"UPGATE_CHANGED_COUNT="+strconv.Itoa(len(paths)+dropped),
		"UPGATE_CHANGED_TRUNCATED="+truncated,
	)
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return n, nil
}

func (t *tail) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return append([]byte(nil), b...)
}
