package backend

import (
	"context"
	"sync"

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
// reschedule replaces. Every new call and every new stream (one open
// file) asks Resolve for the target and goes to a connection to it,
// dialled on first use and kept while the target stays. So a session's
// filesystem, built once at login over a FollowConn, follows the agent to
// its new pod without a new login.
//
// When the target moves (seen by a new call, or by Refresh when told of a
// change), the connection to the old target is closed at once: calls and
// streams still running on it fail with codes.Canceled, so an upload in
// flight aborts and the agent discards its temp file (nothing partial is
// committed, on either pod). A FollowConn is safe for concurrent use;
// Close closes it.
type FollowConn struct {
	opts FollowOptions

	// mu guards target, cc, gen and closed.
	mu     sync.Mutex
	target string
	cc     *grpc.ClientConn
	gen    uint64 // counts switches
	closed bool
}

var _ grpc.ClientConnInterface = (*FollowConn)(nil)

// NewFollowConn returns a FollowConn; it dials nothing until the first
// call.
func NewFollowConn(opts FollowOptions) *FollowConn {
	return &FollowConn{opts: opts}
}

// Invoke implements grpc.ClientConnInterface.
func (f *FollowConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	cc, err := f.current(ctx)
	if err != nil {
		return err
	}
	return cc.Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (f *FollowConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cc, err := f.current(ctx)
	if err != nil {
		return nil, err
	}
	return cc.NewStream(ctx, desc, method, opts...)
}

// errFollowClosed fails calls after Close.
var errFollowClosed = status.Error(codes.Canceled, "backend: agent connection closed")

// current resolves the target and returns the connection to it.
func (f *FollowConn) current(ctx context.Context) (*grpc.ClientConn, error) {
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
		if f.cc != nil && f.target == target {
			cc := f.cc
			f.mu.Unlock()
			return cc, nil
		}
		cc, err := f.opts.Dial(target)
		if err != nil {
			f.mu.Unlock()
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		old, oldTarget := f.cc, f.target
		f.cc, f.target = cc, target
		f.gen++
		f.mu.Unlock()
		f.retire(old, oldTarget, target)
		return cc, nil
	}
}

// retire closes the connection to a target that is no longer current.
func (f *FollowConn) retire(old *grpc.ClientConn, oldTarget, newTarget string) {
	if old != nil {
		_ = old.Close()
	}
	if f.opts.OnSwitch != nil && oldTarget != newTarget {
		f.opts.OnSwitch(oldTarget, newTarget)
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
	if f.cc == nil || (err == nil && target == f.target) {
		f.mu.Unlock()
		return
	}
	old, oldTarget := f.cc, f.target
	f.cc, f.target = nil, ""
	f.mu.Unlock()
	f.retire(old, oldTarget, target)
}

// Target returns the target of the current connection, or "" before the
// first call and after a target went away.
func (f *FollowConn) Target() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.target
}

// Close closes the current connection; later calls fail.
func (f *FollowConn) Close() error {
	f.mu.Lock()
	cc := f.cc
	f.cc, f.target, f.closed = nil, "", true
	f.mu.Unlock()
	if cc != nil {
		return cc.Close()
	}
	return nil
}
