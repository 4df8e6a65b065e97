package agents

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// Event is one event of an agent's AgentEvents stream: a change it
// committed or a run of one of its hooks. Exactly one of Change and
// HookRun is set.
type Event struct {
	// Agent names the agent (a key of the config's agents) and Target
	// the address it was reached at.
	Agent, Target string
	// ID identifies the event, "<boot id>/<seq>".
	ID      string
	Change  *Change
	HookRun *HookRun
}

// Change is a change an agent committed (agentpb.Change). Paths are
// relative to the agent's root.
type Change struct {
	// Op is write (an upload committed; aborted and failed ones are never
	// events), rename, delete or mkdir.
	Op   string
	Path string
	From string // a rename's source
	// Size, Mode and Mtime describe what Path names after the change
	// (zero for a delete).
	Size  int64
	Mode  uint32
	Mtime time.Time
}

// HookRun is one run of a hook of the agent's own hook file
// (agentpb.HookRun). Paths are relative to the agent's root.
type HookRun struct {
	Hook string
	// Result is ok, failed, timeout, start_error, canceled, or unknown
	// for a result this gateway does not know.
	Result string
	// ExitCode is the exit status, -1 when the command did not exit by
	// itself (not started, killed).
	ExitCode   int
	Error      string
	Start      time.Time
	Duration   time.Duration
	Paths      []string // at most the agent's cap
	PathsTotal int
	Output     string // the tail of stdout and stderr
}

var changeOps = map[agentpb.ChangeKind]string{
	agentpb.ChangeKind_CHANGE_KIND_WRITE:  string(hooks.Write),
	agentpb.ChangeKind_CHANGE_KIND_RENAME: string(hooks.Rename),
	agentpb.ChangeKind_CHANGE_KIND_DELETE: string(hooks.Delete),
	agentpb.ChangeKind_CHANGE_KIND_MKDIR:  string(hooks.Mkdir),
}

var hookResults = map[agentpb.HookResult]string{
	agentpb.HookResult_HOOK_RESULT_OK:          string(hooks.OK),
	agentpb.HookResult_HOOK_RESULT_FAILED:      string(hooks.Failed),
	agentpb.HookResult_HOOK_RESULT_TIMEOUT:     string(hooks.Timeout),
	agentpb.HookResult_HOOK_RESULT_START_ERROR: string(hooks.StartError),
	agentpb.HookResult_HOOK_RESULT_CANCELED:    string(hooks.Canceled),
}

// Reconnect backoff of an events stream: from eventsRetryMin doubling to
// eventsRetryMax; an agent without the service is asked again after
// eventsRetryUnimplemented.
const (
	eventsRetryMin           = time.Second
	eventsRetryMax           = 30 * time.Second
	eventsRetryUnimplemented = 5 * time.Minute
)

// eventWatches follows the AgentEvents stream of every agent connection
// the pool makes and hands each event to onEvent.
type eventWatches struct {
	log     *slog.Logger
	onEvent func(Event)

	// mu guards watches (one per agent connection, by agent name and
	// target) and closed. wg counts the watches' goroutines.
	mu      sync.Mutex
	watches map[string]*agentWatch
	closed  bool
	wg      sync.WaitGroup
}

// agentWatch follows one agent connection's events.
type agentWatch struct {
	name, target string
	// cc is the agent's connection: the watch ends when it is shut down.
	// src opens the events stream: over cc, or in process for an
	// embedded agent (localEvents).
	cc     *grpc.ClientConn
	src    eventSource
	cancel context.CancelFunc
	done   chan struct{}
	// followed is closed once the agent's first Hello arrived (events
	// from then on reach onEvent) or the first attempt failed.
	followed     chan struct{}
	followedOnce sync.Once
	// boot and seq are the resume point, touched only by the watch's
	// goroutine (and by its successor once done is closed).
	boot string
	seq  uint64
}

func newEventWatches(log *slog.Logger, onEvent func(Event)) *eventWatches {
	return &eventWatches{log: log.With("component", "agent-events"), onEvent: onEvent, watches: make(map[string]*agentWatch)}
}

// watch follows the events of the agent name at target from src (nil:
// the AgentEvents service over cc) until close, or until cc is closed. A
// watch of the same agent and target before it (a connection replaced by
// a reload) stops, and this one resumes where it was. Without onEvent it
// does nothing. The channel it returns is closed once the agent has
// answered the watch (its events from then on are followed) or the first
// attempt has failed; nil when there is nothing to wait for.
func (ew *eventWatches) watch(name, target string, cc *grpc.ClientConn, src eventSource) <-chan struct{} {
	if ew.onEvent == nil {
		return nil
	}
	ew.mu.Lock()
	defer ew.mu.Unlock()
	if ew.closed {
		return nil
	}
	key := name + "\x00" + target
	old := ew.watches[key]
	ctx, cancel := context.WithCancel(context.Background())
	if src == nil {
		src = grpcEvents{agentpb.NewAgentEventsClient(cc)}
	}
	w := &agentWatch{name: name, target: target, cc: cc, src: src, cancel: cancel, done: make(chan struct{}), followed: make(chan struct{})}
	ew.watches[key] = w
	ew.wg.Add(1)
	go func() {
		defer ew.wg.Done()
		defer close(w.done)
		defer cancel()
		if old != nil {
			old.cancel()
			<-old.done
			w.boot, w.seq = old.boot, old.seq
		}
		ew.follow(ctx, w)
	}()
	return w.followed
}

// close stops every watch and returns once their goroutines are gone.
func (ew *eventWatches) close() {
	ew.mu.Lock()
	ew.closed = true
	for _, w := range ew.watches {
		w.cancel()
	}
	ew.mu.Unlock()
	ew.wg.Wait()
}

// follow reads w's events, reconnecting with backoff, until ctx ends or
// the connection is closed.
func (ew *eventWatches) follow(ctx context.Context, w *agentWatch) {
	log := ew.log.With("agent", w.name, "address", w.target)
	retry := eventsRetryMin
	for {
		start := time.Now()
		err := w.src.follow(ctx, &agentpb.EventsRequest{BootId: w.boot, Since: w.seq}, func(ev *agentpb.AgentEvent) { ew.handle(w, ev, log) })
		w.followedOnce.Do(func() { close(w.followed) }) // failed, if not yet closed
		if ctx.Err() != nil || w.cc.GetState() == connectivity.Shutdown {
			return
		}
		if time.Since(start) > eventsRetryMax {
			retry = eventsRetryMin
		}
		wait := retry
		if status.Code(err) == codes.Unimplemented {
			log.Info("agent does not stream events (an older agent): no hook runs or commits from it", "err", err)
			wait = eventsRetryUnimplemented
		} else {
			log.Debug("agent events stream ended", "err", err, "retry", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		retry = min(2*retry, eventsRetryMax)
	}
}

// eventSource is where a watch reads an agent's events from: follow
// opens one Events stream with req and calls fn with each event, on its
// own goroutine and in order, until the stream fails or ctx ends.
type eventSource interface {
	follow(ctx context.Context, req *agentpb.EventsRequest, fn func(*agentpb.AgentEvent)) error
}

// grpcEvents is an agent's AgentEvents service over its connection.
type grpcEvents struct{ client agentpb.AgentEventsClient }

func (g grpcEvents) follow(ctx context.Context, req *agentpb.EventsRequest, fn func(*agentpb.AgentEvent)) error {
	st, err := g.client.Events(ctx, req)
	if err != nil {
		return err
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		fn(ev)
	}
}

// handle takes one event of w's stream: a Hello sets the resume point,
// anything else moves it on and goes to onEvent. Only w's goroutine calls
// it.
func (ew *eventWatches) handle(w *agentWatch, ev *agentpb.AgentEvent, log *slog.Logger) {
	if h := ev.GetHello(); h != nil {
		if w.boot != "" && ev.GetBootId() != w.boot {
			log.Info("agent restarted: following its new events", "boot", ev.GetBootId())
		}
		if h.GetMissed() > 0 {
			log.Warn("agent events missed while disconnected (the agent keeps the latest only)", "missed", h.GetMissed())
		}
		w.boot, w.seq = ev.GetBootId(), h.GetAfter()
		w.followedOnce.Do(func() { close(w.followed) })
		log.Debug("following agent events", "boot", w.boot, "after", w.seq, "hooks", strings.Join(h.GetHooks(), ","))
		return
	}
	if ev.GetBootId() == w.boot && ev.GetSeq() > w.seq+1 {
		log.Warn("agent events missed (this gateway fell behind)", "missed", ev.GetSeq()-w.seq-1)
	}
	w.boot, w.seq = ev.GetBootId(), ev.GetSeq()
	if e, ok := convert(w, ev); ok {
		ew.onEvent(e)
	}
}

// convert is an agent event as an Event; false for a kind this gateway
// does not know yet.
func convert(w *agentWatch, ev *agentpb.AgentEvent) (Event, bool) {
	e := Event{Agent: w.name, Target: w.target, ID: fmt.Sprintf("%s/%d", ev.GetBootId(), ev.GetSeq())}
	if c := ev.GetChange(); c != nil {
		e.Change = &Change{Op: changeOps[c.GetKind()], Path: string(c.GetPath()), From: string(c.GetFrom()),
			Size: c.GetSize(), Mode: c.GetMode()}
		if c.GetMtimeUnixNano() != 0 {
			e.Change.Mtime = time.Unix(0, c.GetMtimeUnixNano())
		}
		return e, true
	}
	r := ev.GetHookRun()
	if r == nil {
		return e, false
	}
	result := hookResults[r.GetResult()]
	if result == "" {
		result = "unknown"
	}
	e.HookRun = &HookRun{Hook: r.GetHook(), Result: result, ExitCode: int(r.GetExitCode()), Error: r.GetError(),
		Start: time.Unix(0, r.GetStartUnixNano()), Duration: time.Duration(r.GetDurationNanos()),
		PathsTotal: int(r.GetPathsTotal()), Output: string(r.GetOutput())}
	for _, p := range r.GetPaths() {
		e.HookRun.Paths = append(e.HookRun.Paths, string(p))
	}
	return e, true
}
