package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// Result is how a run ended.
type Result string

// The results of a run.
const (
	// OK: the command exited with status 0.
	OK Result = "ok"
	// Failed: the command exited with another status or was killed by a
	// signal it did not get from the runner.
	Failed Result = "failed"
	// Timeout: the command outlived Hook.Timeout and its process group
	// was killed.
	Timeout Result = "timeout"
	// StartError: the command could not be started (missing binary, not
	// executable, no such working directory); Run.Err says why.
	StartError Result = "start_error"
	// Canceled: the runner was closed while the command ran; its process
	// group was killed.
	Canceled Result = "canceled"
)

// Run is one run of a hook.
type Run struct {
	// Hook is the hook's name.
	Hook string
	// Paths are the distinct changed paths the run was given, relative
	// to the agent root, in the order they first changed; at most
	// MaxPaths.
	Paths []string
	// Dropped counts the changed paths beyond MaxPaths, not listed.
	Dropped int
	// Start is when the command started (or failed to); Duration is how
	// long it ran, until its output was closed.
	Start    time.Time
	Duration time.Duration
	// Result is how it ended; ExitCode its exit status, -1 when it did
	// not exit by itself (not started, killed by a signal).
	Result   Result
	ExitCode int
	// Err is why the run is not OK ("exit status 3", "timed out after
	// 30s: process group killed", `exec: "php": executable file not found
	// in $PATH`), or a note on an OK run; "" otherwise.
	Err string
	// Output is the tail of the command's stdout and stderr together, at
	// most OutputTail bytes.
	Output []byte
}

// Options configure a Runner.
type Options struct {
	// Root is the agent's root directory: each command's working
	// directory, and what changed paths are relative to. Required.
	Root string
	// Logger receives one line per run, "hook ran" (Info when OK, Warn
	// otherwise). Nil means slog.Default().
	Logger *slog.Logger
	// OnRun, if non-nil, is called after each run with its outcome, on
	// the hook's own goroutine: a slow OnRun delays that hook's next run
	// (and Close), never another hook's.
	OnRun func(Run)
}

// Runner runs a fixed set of hooks for the changes it is told about. Its
// methods are safe for concurrent use. A nil *Runner has no hooks.
type Runner struct {
	root    string
	log     *slog.Logger
	onRun   func(Run)
	workers []*worker

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewRunner validates hooks and starts one goroutine per hook, which wait
// for changes. Close stops them.
func NewRunner(hooks []Hook, opts Options) (*Runner, error) {
	if opts.Root == "" {
		return nil, errors.New("hooks: a root directory is required")
	}
	if err := Validate(hooks); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("hooks: root: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{root: root, log: log, onRun: opts.OnRun, ctx: ctx, cancel: cancel}
	for _, h := range hooks {
		h.Match, h.Exclude, h.On, h.Command = clone(h.Match), clone(h.Exclude), clone(h.On), clone(h.Command)
		w := &worker{r: r, h: h, notify: make(chan struct{}, 1), seen: make(map[string]struct{})}
		r.workers = append(r.workers, w)
		r.wg.Add(1)
		go w.loop()
	}
	return r, nil
}

func clone[T any](s []T) []T { return append([]T(nil), s...) }

// Hooks names the runner's hooks, in file order.
func (r *Runner) Hooks() []string {
	if r == nil {
		return nil
	}
	names := make([]string, len(r.workers))
	for i, w := range r.workers {
		names[i] = w.h.Name
	}
	return names
}

// Changed tells the runner that p (relative to the root, clean) changed
// by kind. Every hook that wants kind and matches p schedules a run. It
// never blocks on a running hook.
func (r *Runner) Changed(kind Kind, p string) {
	if r == nil || r.ctx.Err() != nil {
		return
	}
	for _, w := range r.workers {
		if w.h.wants(kind) && w.h.matches(p) {
			w.add(p)
		}
	}
}

// Close stops every hook: a running command's process group is killed
// (its run ends Canceled) and changes not yet run are dropped. When it
// returns, the runner's goroutines are gone and no command it started is
// still its child.
func (r *Runner) Close() {
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

// worker serves one hook: it collects changed paths and runs the command
// once they settle, never twice at once.
type worker struct {
	r      *Runner
	h      Hook
	notify chan struct{} // a change arrived; capacity 1

	// mu guards the changes not yet given to a run.
	mu      sync.Mutex
	pending []string
	seen    map[string]struct{}
	dropped int
	last    time.Time // when the latest change arrived
}

func (w *worker) add(p string) {
	w.mu.Lock()
	if _, dup := w.seen[p]; !dup {
		if len(w.pending) < MaxPaths {
			w.pending = append(w.pending, p)
			w.seen[p] = struct{}{}
		} else {
			w.dropped++
		}
	}
	w.last = time.Now()
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// take hands the pending changes to a run, or reports how long to wait
// for the debounce window to pass.
func (w *worker) take() (paths []string, dropped int, wait time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 && w.dropped == 0 {
		return nil, 0, -1
	}
	if wait := time.Until(w.last.Add(w.h.debounce())); wait > 0 {
		return nil, 0, wait
	}
	paths, dropped = w.pending, w.dropped
	w.pending, w.dropped = nil, 0
	clear(w.seen)
	return paths, dropped, 0
}

func (w *worker) loop() {
	defer w.r.wg.Done()
	ctx := w.r.ctx
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
		}
		// Run once no change came for the debounce window. Changes that
		// arrive during a run wait for their own window after it, counted
		// from the latest of them, and then run once together.
		for {
			paths, dropped, wait := w.take()
			if wait < 0 {
				break // nothing pending
			}
			if wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				case <-w.notify:
					timer.Stop()
				}
				continue
			}
			run := execute(ctx, &w.h, w.r.root, paths, dropped)
			w.r.logRun(run)
			if w.r.onRun != nil {
				w.r.onRun(run)
			}
		}
	}
}

// logRun writes one line per run.
func (r *Runner) logRun(run Run) {
	attrs := []any{"hook", run.Hook, "result", string(run.Result), "exit", run.ExitCode,
		"duration", run.Duration.Round(time.Millisecond), "paths", len(run.Paths) + run.Dropped}
	if run.Result == OK {
		if run.Err != "" {
			attrs = append(attrs, "note", run.Err)
		}
		r.log.Info("hook ran", attrs...)
		return
	}
	attrs = append(attrs, "err", run.Err)
	if len(run.Output) > 0 {
		attrs = append(attrs, "output", string(lastLine(run.Output, 512)))
	}
	r.log.Warn("hook ran", attrs...)
}

// lastLine is the end of out, at most n bytes, without a trailing newline.
func lastLine(out []byte, n int) []byte {
	for len(out) > 0 && (out[len(out)-1] == '\n' || out[len(out)-1] == '\r') {
		out = out[:len(out)-1]
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
