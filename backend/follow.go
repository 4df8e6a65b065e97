package backend

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FollowOptions configure a FollowConn. Resolve and Dial are required.
type FollowOptions struct {
	// Resolve returns the agent's target now (host:port). It is called
	// for every new call and stream, so it must be cheap: a cache lookup,
	// such as podagents.Resolver.Resolve. Its error fails the call with
	// codes.Unavailable and its text, which GRPCFs shows the user as
	// "agent NAME for user USER unreachable: <text>".
	Resolve func(ctx context.Context) (string, error)

	// Dial returns a connection to a target, as Dial does.
	Dial func(target string) (*grpc.ClientConn, error)

	// OnSwitch, if non-nil, is called after the target changed (old or
	// new may be "", for none), for logs.
	OnSwitch func(old, new string)
}

// FollowConn is a grpc.ClientConnInterface to an agent whose address
// changes: a per-user agent in a pod that a rollout, a crash or a
// reschedule replaces. Every new call and every new stream asks Resolve
// for the target and goes to a connection to it, dialled on first use and
// kept while the target stays.
//
// When the target moves (seen by Refresh when told of a change, or by a
// new call of any session), the connection to the old target is closed at
// once: calls and streams still running on it fail with codes.Unavailable
// and a message that says the agent moved, so an upload in flight aborts
// and the agent discards its temp file (nothing partial is committed, on
// either pod). A GRPCFs then opens a new Session stream for its next
// operation, which goes to the new target: so a session's filesystem,
// built once at login over a FollowConn, follows the agent to its new pod
// without a new login. Streams live long (one Session stream carries all
// of a session's operations), so Refresh must be called when the target
// may have changed; a stream reports that its connection was retired
// (Retired) before it fails, so that the next operation goes to a new
// stream at once.
//
// A FollowConn is safe for concurrent use; Close closes it.
type FollowConn struct {
	opts FollowOptions

	// mu guards cur, gen and closed.
	mu     sync.Mutex
	cur    *followTarget // nil before the first call and after a target went away
	gen    uint64        // counts switches
	closed bool
}

// followTarget is a connection to one target.
type followTarget struct {
	cc     *grpc.ClientConn
	target string
	// gone, once set, says why the connection was closed: what calls
	// and streams that were running on it fail with.
	gone atomic.Pointer[string]
}

// retire closes the connection; what runs on it fails with why.
func (t *followTarget) retire(why string) {
	t.gone.Store(&why)
	_ = t.cc.Close()
}

// err replaces the error of a call or stream on a retired connection
// (codes.Canceled, "the client connection is closing") by why it was
// retired.
func (t *followTarget) err(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	if why := t.gone.Load(); why != nil {
		return status.Error(codes.Unavailable, *why)
	}
	return err
}

var _ grpc.ClientConnInterface = (*FollowConn)(nil)

// NewFollowConn returns a FollowConn; it dials nothing until the first
// call.
func NewFollowConn(opts FollowOptions) *FollowConn {
	return &FollowConn{opts: opts}
}

// Invoke implements grpc.ClientConnInterface.
func (f *FollowConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	t, err := f.current(ctx)
	if err != nil {
		return err
	}
	return t.err(t.cc.Invoke(ctx, method, args, reply, opts...))
}

// NewStream implements grpc.ClientConnInterface.
func (f *FollowConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	t, err := f.current(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := t.cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, t.err(err)
	}
	return &followStream{ClientStream: cs, t: t}, nil
}

// followStream reports why its connection was retired.
type followStream struct {
	grpc.ClientStream
	t *followTarget
}

func (s *followStream) SendMsg(m any) error { return s.t.err(s.ClientStream.SendMsg(m)) }
func (s *followStream) RecvMsg(m any) error { return s.t.err(s.ClientStream.RecvMsg(m)) }
func (s *followStream) CloseSend() error    { return s.t.err(s.ClientStream.CloseSend()) }

// Retired reports that the stream's connection was closed (the agent
// moved), which the stream itself notices a moment later.
func (s *followStream) Retired() bool { return s.t.gone.Load() != nil }

// errFollowClosed fails calls after Close.
var errFollowClosed = status.Error(codes.Canceled, "backend: agent connection closed")

// current resolves the target and returns the connection to it.
func (f *FollowConn) current(ctx context.Context) (*followTarget, error) {
	// A switch between Resolve and taking mu may mean the answer is
	// stale (the old pod): then ask again, a bounded number of times.
	for attempt := 0; ; attempt++ {
		f.mu.Lock()
		gen := f.gen
		f.mu.Unlock()
		target, err := f.opts.Resolve(ctx)
		if err != nil {
			if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
				return nil, err
			}
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, errFollowClosed
		}
		if f.gen != gen && attempt < 3 {
			f.mu.Unlock()
			continue
		}
		if f.cur != nil && f.cur.target == target {
			t := f.cur
			f.mu.Unlock()
			return t, nil
		}
		cc, err := f.opts.Dial(target)
		if err != nil {
			f.mu.Unlock()
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		old := f.cur
		f.cur = &followTarget{cc: cc, target: target}
		f.gen++
		t := f.cur
		f.mu.Unlock()
		f.switched(old, target, "")
		return t, nil
	}
}

// switched retires the old target's connection and reports the switch.
// why is what made the target go away ("" when it moved).
func (f *FollowConn) switched(old *followTarget, target, why string) {
	oldTarget := ""
	if old != nil {
		oldTarget = old.target
		if why == "" {
			why = "the agent moved from " + old.target + " to " + target + " (its pod was replaced): transfer aborted, try again"
		} else {
			why = "the agent at " + old.target + " went away (" + why + "): transfer aborted"
		}
		old.retire(why)
	}
	if f.opts.OnSwitch != nil && oldTarget != target {
		f.opts.OnSwitch(oldTarget, target)
	}
}

// Refresh asks Resolve again and, if the target moved or there is none,
// closes the connection to the old one, ending what still runs on it. The
// next call dials the new target. Call it when told that the target may
// have changed (podagents.Resolver.Subscribe); it does not block beyond
// Resolve and closing a connection.
func (f *FollowConn) Refresh(ctx context.Context) {
	target, err := f.opts.Resolve(ctx)
	if ctx.Err() != nil {
		return // no answer, which says nothing about the pod
	}
	f.mu.Lock()
	// A call between its Resolve and mu re-resolves: its answer may
	// predate this change.
	f.gen++
	if f.cur == nil || (err == nil && target == f.cur.target) {
		f.mu.Unlock()
		return
	}
	old := f.cur
	f.cur = nil
	f.mu.Unlock()
	why := ""
	if err != nil {
		target, why = "", err.Error()
	}
	f.switched(old, target, why)
}

// Target returns the target of the current connection, or "" before the
// first call and after a target went away.
func (f *FollowConn) Target() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil {
		return ""
	}
	return f.cur.target
}

// Close closes the current connection; later calls fail.
func (f *FollowConn) Close() error {
	f.mu.Lock()
	cur := f.cur
	f.cur, f.closed = nil, true
	f.mu.Unlock()
	if cur != nil {
		return cur.cc.Close()
	}
	return nil
}
