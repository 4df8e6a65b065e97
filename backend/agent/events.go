package agent

// What the agent tells its gateways (agentpb.AgentEvents) and its hooks
// (package hooks): the changes it committed, and what the hooks did.
//
// The path operations and the commit of an upload call the notify
// functions below once they have succeeded, each in one line marked
// "hooks+events". Nothing else reaches the hooks: no call of either
// service carries a command, and the hooks' commands come only from
// Config.Hooks (the agent's own hook file).

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

const (
	// keepEvents is how many of the latest events the agent keeps for
	// gateways that resume (agentpb.EventsRequest).
	keepEvents = 4096
	// maxEventPaths bounds the paths one HookRun event lists.
	maxEventPaths = 1000
	// eventBatch bounds the events one stream takes per look at the log.
	eventBatch = 256
	// eventCoalesce is how long an Events stream waits after a change
	// before it looks at the log, so that a burst goes out together.
	eventCoalesce = 2 * time.Millisecond
)

// events is the agent's event log and its AgentEvents service.
type events struct {
	agentpb.UnimplementedAgentEventsServer

	boot    string
	version string
	hooks   *hooks.Runner // nil without hooks

	// mu guards the log: seq is the latest event's, ring the latest
	// keepEvents events (oldest first, seqs consecutive), wake is closed
	// and replaced when an event is added or the log closes.
	mu     sync.Mutex
	seq    uint64
	ring   []*agentpb.AgentEvent
	wake   chan struct{}
	closed bool
}

// startEvents opens the event log and starts the hook runner.
func (s *Server) startEvents(root string, hs []hooks.Hook) error {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("agent: boot id: %w", err)
	}
	e := &events{boot: hex.EncodeToString(b[:]), version: s.version, wake: make(chan struct{})}
	if len(hs) > 0 {
		r, err := hooks.NewRunner(hs, hooks.Options{Root: root, Logger: s.log, OnRun: e.hookRan})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		e.hooks = r
	}
	s.events = e
	return nil
}

// stopEvents stops the hooks (a running one's process group is killed)
// and ends every Events stream.
func (s *Server) stopEvents() {
	if s.events == nil {
		return
	}
	s.events.hooks.Close()
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	if !s.events.closed {
		s.events.closed = true
		close(s.events.wake)
	}
}

// BootID identifies this agent process in its events (agentpb.AgentEvent).
func (s *Server) BootID() string { return s.events.boot }

// Events serves one AgentEvents stream to a caller in this process, as
// the gRPC service (ServerOptions) does to a gateway over the network:
// a gateway embedding the agent follows its events without the loopback
// transport (backend/agents). It checks no token; the caller holds the
// Server already.
func (s *Server) Events(req *agentpb.EventsRequest, stream grpc.ServerStreamingServer[agentpb.AgentEvent]) error {
	return s.events.Events(req, stream)
}

// notify reports a path operation on p that ended with err: on success,
// an event, and the hooks that want kind and match p.
func (s *Server) notify(err error, kind hooks.Kind, p string) {
	if err == nil {
		s.changed(kind, p, "")
	}
}

// notifyMkdir is notify for a mkdir; existed says the directory was
// there before (a mkdir -p that changed nothing).
func (s *Server) notifyMkdir(err error, existed bool, p string) {
	if err == nil && !existed {
		s.changed(hooks.Mkdir, p, "")
	}
}

// notifyRename is notify for a rename of from to to.
func (s *Server) notifyRename(err error, from, to string) {
	if err == nil {
		s.changed(hooks.Rename, to, from)
	}
}

// isDir reports whether p is a directory now, for notifyMkdir.
func (s *Server) isDir(sc *scope, p string) bool {
	fi, err := sc.Lstat(p)
	return err == nil && fi.IsDir()
}

// committed reports a handle's clean close: the commit of an atomic
// upload, or the end of an in-place write. Reads, discarded uploads and
// joins of another handle's upload (which commits on its own) change
// nothing, except a join that changed the data after that upload had
// committed: then the committed file changed after its event.
func (s *Server) committed(h *handle) {
	s.mu.Lock()
	p, unlinked := h.path, h.unlinked
	if h.joined != nil {
		p = h.joined.path // a move or a directory rename moved the upload, not its joins
	}
	s.mu.Unlock()
	switch {
	case unlinked || !h.writable:
		return
	case h.joined != nil && !(h.changedAfter && h.joined.committedOK.Load()):
		return // a join writes another upload's data: that commit announces it
	}
	s.changedInfo(hooks.Write, p, "", h.info) // a join's info is nil: looked up
}

// changed records a change and hands it to the hooks.
func (s *Server) changed(kind hooks.Kind, p, from string) { s.changedInfo(kind, p, from, nil) }

// changedInfo is changed with the changed file's state when the caller
// has it (fi); nil looks it up.
func (s *Server) changedInfo(kind hooks.Kind, p, from string, fi fs.FileInfo) {
	c := &agentpb.Change{Kind: changeKinds[kind], Path: []byte(p), From: []byte(from)}
	if kind != hooks.Delete {
		if fi == nil {
			fi, _ = s.root.Lstat(p)
		}
		if fi != nil {
			c.Size, c.MtimeUnixNano, c.Mode = fi.Size(), fi.ModTime().UnixNano(), uint32(fi.Mode())
		}
	}
	if from == "" {
		c.From = nil
	}
	s.events.add(&agentpb.AgentEvent{Event: &agentpb.AgentEvent_Change{Change: c}})
	s.events.hooks.Changed(kind, p)
}

var changeKinds = map[hooks.Kind]agentpb.ChangeKind{
	hooks.Write:  agentpb.ChangeKind_CHANGE_KIND_WRITE,
	hooks.Rename: agentpb.ChangeKind_CHANGE_KIND_RENAME,
	hooks.Delete: agentpb.ChangeKind_CHANGE_KIND_DELETE,
	hooks.Mkdir:  agentpb.ChangeKind_CHANGE_KIND_MKDIR,
}

var hookResults = map[hooks.Result]agentpb.HookResult{
	hooks.OK:         agentpb.HookResult_HOOK_RESULT_OK,
	hooks.Failed:     agentpb.HookResult_HOOK_RESULT_FAILED,
	hooks.Timeout:    agentpb.HookResult_HOOK_RESULT_TIMEOUT,
	hooks.StartError: agentpb.HookResult_HOOK_RESULT_START_ERROR,
	hooks.Canceled:   agentpb.HookResult_HOOK_RESULT_CANCELED,
}

// hookRan records a hook run (hooks.Options.OnRun).
func (e *events) hookRan(run hooks.Run) {
	hr := &agentpb.HookRun{
		Hook:          run.Hook,
		PathsTotal:    uint64(len(run.Paths) + run.Dropped),
		Result:        hookResults[run.Result],
		ExitCode:      int32(run.ExitCode),
		Error:         run.Err,
		StartUnixNano: run.Start.UnixNano(),
		DurationNanos: int64(run.Duration),
		Output:        run.Output,
	}
	for _, p := range run.Paths[:min(len(run.Paths), maxEventPaths)] {
		hr.Paths = append(hr.Paths, []byte(p))
	}
	e.add(&agentpb.AgentEvent{Event: &agentpb.AgentEvent_HookRun{HookRun: hr}})
}

// add numbers ev and appends it to the log. ev is never changed again:
// streams send it concurrently.
func (e *events) add(ev *agentpb.AgentEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.seq++
	ev.BootId, ev.Seq, ev.TimeUnixNano = e.boot, e.seq, time.Now().UnixNano()
	// Dropping the oldest moves the slice's start instead of shifting
	// every kept event down one (4,096 pointers an event, once full);
	// append copies the kept ones to a new array now and then, when the
	// old one's end is reached.
	e.ring = append(e.ring, ev)
	if len(e.ring) > keepEvents {
		e.ring[0] = nil
		e.ring = e.ring[1:]
	}
	close(e.wake)
	e.wake = make(chan struct{})
}

// Events serves agentpb.AgentEventsServer: a Hello, the kept events after
// the resume point, then live ones until the call ends or the agent
// stops.
func (e *events) Events(req *agentpb.EventsRequest, stream grpc.ServerStreamingServer[agentpb.AgentEvent]) error {
	e.mu.Lock()
	after := e.seq // a gateway without a resume point: from now on
	switch req.GetBootId() {
	case "":
	case e.boot:
		after = min(req.GetSince(), e.seq)
	default:
		after = 0 // the agent restarted: all of this boot is new
	}
	var missed uint64
	if len(e.ring) > 0 && e.ring[0].Seq > after+1 {
		missed = e.ring[0].Seq - after - 1
	}
	e.mu.Unlock()
	hello := &agentpb.AgentEvent{BootId: e.boot, TimeUnixNano: time.Now().UnixNano(),
		Event: &agentpb.AgentEvent_Hello{Hello: &agentpb.Hello{After: after, Missed: missed, Hooks: e.hooks.Hooks(), Version: e.version}}}
	if err := stream.Send(hello); err != nil {
		return err
	}
	for {
		batch, wake, closed := e.after(after)
		for _, ev := range batch {
			if err := stream.Send(ev); err != nil {
				return err
			}
			after = ev.Seq
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return status.Error(codes.Unavailable, "agent: stopping")
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-wake:
		}
		// Let the changes of a burst (a mirror, a save's several
		// files) gather, to send them in one write: each wake-up and
		// send costs the agent's and the gateway's transport
		// goroutines a hand-off, on the CPUs the transfers need
		// (issue 15). The feed is for people and hooks; 2 ms is not
		// seen.
		t := time.NewTimer(eventCoalesce)
		select {
		case <-stream.Context().Done():
			t.Stop()
			return stream.Context().Err()
		case <-t.C:
		}
	}
}

// after returns up to eventBatch kept events after seq, and what to wait
// on for more.
func (e *events) after(seq uint64) (batch []*agentpb.AgentEvent, wake <-chan struct{}, closed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.ring); n > 0 && e.ring[n-1].Seq > seq {
		i := 0
		if first := e.ring[0].Seq; seq >= first {
			i = int(seq - first + 1)
		}
		batch = append(batch, e.ring[i:min(n, i+eventBatch)]...)
	}
	return batch, e.wake, e.closed
}
