package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// This file multiplexes a GRPCFs's operations over one Session stream to
// its agent (agent protocol v2, see agentpb.AgentServer.Session): every
// path operation and every request on an open file is one message with an
// id, answered by one message with that id.
//
// Lock order, outermost first, for the whole package's agent client:
//
//	file.mu  >  muxConn.sendMu  >  muxConn.pmu
//	mux.mu   >  muxConn.sendMu  >  muxConn.pmu
//
// writer.errMu, uploadDir.mu (posted.go) and the channels are leaves.
// Reply callbacks run on the receive loop with none of these locks held,
// or, on a deliveringStream, on the embedded agent's goroutine while it
// holds its session's send lock; either way they take only leaves and
// never block: a callback never waits for a file, and a slow one would
// hold up every reply of its stream.

// mux holds a GRPCFs's current Session stream, opening a new one when
// there is none or the last one broke. Files stay on the stream they were
// opened on: when it breaks, they fail and their uploads abort on the
// agent, and the next operation opens a new stream.
type mux struct {
	g *GRPCFs

	mu  sync.Mutex // guards cur; held while a new stream says Hello
	cur *muxConn
}

// muxConn is one Session stream.
type muxConn struct {
	g      *GRPCFs
	stream agentpb.Agent_SessionClient
	ctx    context.Context         // the stream's; its cause says why it was cut
	cut    context.CancelCauseFunc // ends the stream; a cause the stream's error reports
	// retired, if the connection can tell, reports that it was closed
	// under the stream (see retirable).
	retired func() bool

	// features is the agent's FileFeature bit set, from its Hello.
	features uint32

	// lend is the stream's SendLent, or nil (see lendingStream).
	lend func(*agentpb.SessionRequest) error

	// sendMu serializes Send and id allocation.
	sendMu sync.Mutex
	nextID uint64
	// stalled cuts the stream when a Send waits past the call timeout
	// (sendBy); armed only during a Send, under sendMu.
	stalled *time.Timer

	// pmu guards pending and err; the receive loop fills them.
	pmu     sync.Mutex
	pending map[uint64]func(*agentpb.SessionResponse, error)
	err     error         // why the stream ended, once it has
	done    chan struct{} // closed when the receive loop ends
}

// lendingStream is a Session stream that can pass a write's data to the
// agent without copying it: the in-process stream to an embedded agent
// (backend/agents), where a copy per message is most of what a bulk
// upload costs beyond its socket reads and the agent's writes. SendLent
// sends req as Send does, but the data of its write is lent: the sender
// neither changes nor reuses it until the agent has answered req, and
// never if no answer comes (the stream ended first).
type lendingStream interface {
	SendLent(*agentpb.SessionRequest) error
}

// deliveringStream is a Session stream that can hand each of the agent's
// replies to a function as the agent sends it, on the agent's goroutine,
// instead of queueing it for Recv: the in-process stream to an embedded
// agent (backend/agents), where the receive loop's hand-off would be one
// more goroutine wake-up per operation. Deliver is called once, before the
// first Send; Recv then returns only how the stream ended. The function
// takes only leaf locks and never blocks (see the lock order above).
type deliveringStream interface {
	Deliver(func(*agentpb.SessionResponse))
}

// retirable is a stream that knows when its connection was closed under
// it, before the stream itself fails: FollowConn's, when the agent moved.
type retirable interface{ Retired() bool }

// ErrAgentProtocol is wrapped by the error of every operation on an agent
// that does not speak this gateway's protocol (agentpb.SessionHello).
var ErrAgentProtocol = errors.New("agent protocol mismatch")

// conn returns the current stream, opening one if needed.
func (m *mux) conn() (*muxConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.cur; c != nil {
		select {
		case <-c.done:
		default:
			// A connection closed under the stream (FollowConn, when
			// the agent moved) fails it a moment later: do not send
			// into it meanwhile.
			if c.retired == nil || !c.retired() {
				return c, nil
			}
		}
	}
	c, err := m.open()
	if err != nil {
		return nil, err
	}
	m.cur = c
	return c, nil
}

// open opens a Session stream and says Hello, within the call timeout.
func (m *mux) open() (*muxConn, error) {
	g := m.g
	ctx, cut := context.WithCancelCause(g.ctx)
	cancel := func() { cut(nil) }
	// Bound the setup: NewStream waits while the agent connects.
	setup := time.AfterFunc(g.timeout, cancel)
	defer setup.Stop()
	var stream agentpb.Agent_SessionClient
	var err error
	if g.opts.Session != nil {
		stream, err = g.opts.Session(ctx)
	} else {
		stream, err = g.client.Session(ctx)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	c := &muxConn{
		g: g, stream: stream, ctx: ctx, cut: cut,
		pending: make(map[uint64]func(*agentpb.SessionResponse, error)),
		done:    make(chan struct{}),
	}
	c.stalled = time.AfterFunc(g.timeout, func() {
		c.cut(fmt.Errorf("%w: the agent took no request for %v", errSendStalled, g.timeout))
	})
	c.stalled.Stop()
	if ls, ok := stream.(lendingStream); ok {
		c.lend = ls.SendLent
	}
	if ds, ok := stream.(deliveringStream); ok {
		ds.Deliver(c.dispatch)
	}
	if gs, ok := stream.(*grpc.GenericClientStream[agentpb.SessionRequest, agentpb.SessionResponse]); ok {
		if r, ok := gs.ClientStream.(retirable); ok {
			c.retired = r.Retired
		}
	}
	go c.recvLoop()
	resp, err := c.call(context.Background(), g.timeout, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{
		Protocol: agentProtocol, Root: []byte(g.root),
	}}})
	if err == nil && resp.GetError() != nil {
		err = status.Error(codes.Code(resp.GetError().GetCode()), resp.GetError().GetMessage())
	}
	if err == nil && resp.GetHello().GetProtocol() < agentProtocol {
		err = fmt.Errorf("%w: the agent speaks protocol %d, this gateway %d", ErrAgentProtocol, resp.GetHello().GetProtocol(), agentProtocol)
	}
	if err == nil {
		c.features = resp.GetHello().GetFeatures()
	}
	if err != nil {
		c.close()
		if status.Code(err) == codes.Unimplemented {
			// An agent older than protocol v2 does not know Session.
			err = &AgentError{Code: codes.FailedPrecondition, Detail: err.Error(), err: ErrAgentProtocol,
				Message: fmt.Sprintf("the agent speaks agent protocol 1 only; this gateway needs %d: upgrade the agent (upgate agent) to the gateway's version", agentProtocol)}
		}
		return nil, err
	}
	return c, nil
}

// cancel ends the stream without a cause of its own.
func (c *muxConn) cancel() { c.cut(nil) }

// errSendStalled is wrapped by the error of a stream cut because a send
// waited longer than the call timeout (muxConn.sendBy): Unavailable, as an
// agent that does not answer.
var errSendStalled = status.Error(codes.Unavailable, "session stream stalled")

// stallOr is why the stream ended: the send watchdog's cause when it cut
// the stream (sendBy), err otherwise.
func (c *muxConn) stallOr(err error) error {
	if cause := context.Cause(c.ctx); errors.Is(cause, errSendStalled) {
		return cause
	}
	return err
}

// agentProtocol is the agent protocol version this gateway speaks.
const agentProtocol = 2

// recvLoop dispatches replies to their callbacks until the stream ends,
// then fails every request still waiting. On a deliveringStream the
// replies come through dispatch directly, and Recv returns only the end.
func (c *muxConn) recvLoop() {
	defer close(c.done)
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the agent ended the session")
			}
			err = c.stallOr(err)
			c.pmu.Lock()
			c.err = err
			pending := c.pending
			c.pending = nil
			c.pmu.Unlock()
			c.cancel()
			for _, cb := range pending {
				cb(nil, err)
			}
			return
		}
		c.dispatch(resp)
	}
}

// dispatch runs the callback of the request resp answers, if it is still
// waiting: once the stream has ended (pending is nil) or the request was
// given up on, there is none.
func (c *muxConn) dispatch(resp *agentpb.SessionResponse) {
	c.pmu.Lock()
	cb := c.pending[resp.GetId()]
	delete(c.pending, resp.GetId())
	c.pmu.Unlock()
	if cb != nil {
		cb(resp, nil)
	}
}

// broken is the error that ended the stream, or nil.
func (c *muxConn) broken() error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.err
}

// send sends req with a new id, which it returns; cb runs on the receive
// loop with the reply (or the stream's error) exactly once, also when send
// fails, and must not block.
func (c *muxConn) send(req *agentpb.SessionRequest, cb func(*agentpb.SessionResponse, error)) (uint64, error) {
	return c.sendBy(c.stream.Send, req, cb)
}

// lends reports whether the stream takes lent data (lendingStream).
func (c *muxConn) lends() bool { return c.lend != nil }

// sendLent is send with the data of req's write lent to the agent (see
// lendingStream): only on a stream that lends.
func (c *muxConn) sendLent(req *agentpb.SessionRequest, cb func(*agentpb.SessionResponse, error)) (uint64, error) {
	return c.sendBy(c.lend, req, cb)
}

// sendBy is send through the stream's Send or SendLent.
func (c *muxConn) sendBy(sendFn func(*agentpb.SessionRequest) error, req *agentpb.SessionRequest, cb func(*agentpb.SessionResponse, error)) (uint64, error) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.nextID++
	id := c.nextID
	req.Id = id
	c.pmu.Lock()
	err := c.err
	if err == nil && c.ctx.Err() != nil {
		// The stream's context has ended (the session's, or a cut):
		// gRPC ends the stream a moment later, and a request sent
		// meanwhile could still reach the agent. A close would then
		// commit an upload its session had given up.
		err = c.stallOr(status.FromContextError(c.ctx.Err()).Err())
	}
	if err != nil {
		c.pmu.Unlock()
		cb(nil, err)
		return id, err
	}
	c.pending[id] = cb
	c.pmu.Unlock()
	// Send waits while the stream's flow-control window is full: an
	// agent whose handler stopped reading (its filesystem hung under an
	// open) would hold it, with sendMu, and so every operation of the
	// session, for as long as it stays stuck. The call timeout bounds
	// that wait as it bounds a reply's: the stream is cut, its files fail
	// (their uploads abort), and the next operation opens a new one.
	c.stalled.Reset(c.g.timeout)
	err = sendFn(req)
	c.stalled.Stop()
	if err != nil {
		// Send reports io.EOF when the stream broke; Recv has the cause.
		// The receive loop, once ended, has run cb (it was pending before
		// the loop could take the map), so cb runs exactly once.
		c.cancel()
		<-c.done
		return id, c.broken()
	}
	return id, nil
}

// post sends req without waiting for its reply (a close of a file opened
// for reading, of a listing, an abort).
func (c *muxConn) post(req *agentpb.SessionRequest) {
	_, _ = c.send(req, func(*agentpb.SessionResponse, error) {})
}

type reply struct {
	resp *agentpb.SessionResponse
	err  error
}

// call sends req and waits for its reply: at most timeout (none if zero),
// and not past ctx. A request given up on is forgotten; its reply, if it
// comes, is dropped.
func (c *muxConn) call(ctx context.Context, timeout time.Duration, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	ch := make(chan reply, 1)
	id, err := c.send(req, func(r *agentpb.SessionResponse, err error) { ch <- reply{r, err} })
	if err != nil {
		return nil, err
	}
	var expired <-chan time.Time
	if timeout > 0 {
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		expired = timer.C
	}
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-expired:
		err = fmt.Errorf("%w: no reply within %v", context.DeadlineExceeded, timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.pmu.Lock()
	delete(c.pending, id)
	c.pmu.Unlock()
	return nil, err
}

// close ends the stream: the agent aborts the uploads still open on it.
func (c *muxConn) close() {
	c.sendMu.Lock()
	_ = c.stream.CloseSend()
	c.sendMu.Unlock()
	c.cancel()
	<-c.done
}

// do runs one path operation: it opens a stream if needed, sends req,
// waits for the reply (at most the call timeout) and translates a failure
// into an error naming op and the user-visible name. ctx may end the wait
// early (nil means the filesystem's own context alone).
func (g *GRPCFs) do(ctx context.Context, method, op, name string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	return g.doWithin(ctx, g.timeout, method, op, name, req)
}

// doWithin is do with its own timeout; zero means none but ctx's.
func (g *GRPCFs) doWithin(ctx context.Context, timeout time.Duration, method, op, name string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	return g.doOn(ctx, timeout, 0, method, op, name, req)
}

// errLacksFeatures is doNeeding's answer when the agent lacks a feature
// the request needs: nothing was sent.
var errLacksFeatures = errors.New("the agent does not announce a feature the request needs")

// doNeeding is do for a request that only an agent announcing the
// FileFeature bits need serves as meant (an older one ignores the field
// that asks for it, and does something else): the bits are checked on
// the stream the request then goes on, so that a stream replaced between
// a check and a send, by an older agent (a rollback), never gets it.
// Without them it sends nothing and answers errLacksFeatures.
func (g *GRPCFs) doNeeding(ctx context.Context, need agentpb.FileFeature, method, op, name string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	return g.doOn(ctx, g.timeout, uint32(need), method, op, name, req)
}

// doOn is doWithin for an agent announcing the FileFeature bits need.
func (g *GRPCFs) doOn(ctx context.Context, timeout time.Duration, need uint32, method, op, name string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	start := time.Now()
	if ctx == nil {
		ctx = context.Background()
	}
	c, err := g.mux.conn()
	if err == nil && c.features&need != need {
		return nil, errLacksFeatures
	}
	var resp *agentpb.SessionResponse
	if err == nil {
		resp, err = c.call(ctx, timeout, req)
	}
	if g.opts.Observe != nil {
		code := status.Code(err)
		if err == nil && resp.GetError() != nil {
			code = codes.Code(resp.GetError().GetCode())
		}
		g.opts.Observe(method, code, time.Since(start))
	}
	if err != nil {
		return nil, g.err(op, name, err)
	}
	if e := resp.GetError(); e != nil {
		return nil, g.err(op, name, fromProto(op, userPath(name), e))
	}
	return resp, nil
}

// errClosed is the error of a file operation on a stream that has ended.
func (c *muxConn) errClosed(op, name string) error {
	err := c.broken()
	if err == nil {
		err = status.Error(codes.Unavailable, "the session stream ended")
	}
	return c.g.err(op, name, err)
}
