package agents

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
)

// localQueue is how many messages each direction of a local Session
// stream holds before its sender waits: the gateway keeps far fewer in
// flight per file (its write window and read-ahead), so this is slack,
// not a flow-control window.
const localQueue = 64

// localSessions opens Session streams to an embedded agent without gRPC's
// transport: the agent's own Session handler runs in a goroutine of this
// process; the requests pass to it through a channel and its replies go
// straight to the gateway's callbacks (Deliver), unserialized.
//
// Why: the embedded agent is in the gateway's process, and every message
// over loopback gRPC costs HTTP/2 framing, protobuf both ways, two socket
// syscalls and about four goroutine hand-offs between the gateway's and
// the agent's transport goroutines; on a small VM each hand-off to an idle
// CPU is a wake-up of tens of microseconds. An IDE's save is four or five
// such round trips (issue 15). The agent's logic is the same code either
// way: only the transport differs. Its events come in process too
// (localEvents); every other call (health, protocol v1) still goes over
// gRPC.
type localSessions struct {
	srv *agent.Server
	// ctx ends when the embedded agent stops: every stream then ends as
	// a gRPC stream does when its server stops (Unavailable).
	ctx context.Context

	mu      sync.Mutex
	stopped bool
	running sync.WaitGroup // the handlers' goroutines
}

// errLocalStopped is what a stream to a stopped embedded agent returns,
// as gRPC would for a server that went away.
var errLocalStopped = status.Error(codes.Unavailable, "embedded agent stopped")

// open starts a Session stream, bound to ctx as a gRPC stream is: when
// ctx ends, the agent's side sees its stream cancelled.
func (l *localSessions) open(ctx context.Context) (agentpb.Agent_SessionClient, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped || l.ctx.Err() != nil {
		return nil, errLocalStopped
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	sctx, cancel := context.WithCancel(l.ctx)
	p := &localStream{
		clientCtx: ctx, serverCtx: sctx, agentCtx: l.ctx,
		reqs:     make(chan *agentpb.SessionRequest, localQueue),
		resps:    make(chan *agentpb.SessionResponse, localQueue),
		sendDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
	stop := context.AfterFunc(ctx, cancel)
	l.running.Add(1)
	go func() {
		defer l.running.Done()
		defer stop()
		defer cancel()
		p.finish(l.srv.Session(localServer{p}))
	}()
	return localClient{p}, nil
}

// stop refuses new streams and waits for the running ones' handlers,
// which end as the agent's context does.
func (l *localSessions) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.running.Wait()
}

// localStream is one Session stream between the two sides.
type localStream struct {
	clientCtx, serverCtx, agentCtx context.Context

	reqs  chan *agentpb.SessionRequest
	resps chan *agentpb.SessionResponse

	closeSend sync.Once
	sendDone  chan struct{} // closed by CloseSend

	done chan struct{} // closed when the handler has returned
	err  error         // the handler's result; set before done closes

	// deliver, if set (localClient.Deliver, before the gateway's first
	// Send), takes the agent's replies instead of resps.
	deliver func(*agentpb.SessionResponse)
}

// finish records how the handler ended, as the status a gRPC client
// would receive.
func (p *localStream) finish(err error) {
	switch {
	case err == nil:
	case p.agentCtx.Err() != nil:
		err = errLocalStopped
	default:
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Unknown, err.Error())
		}
	}
	p.err = err
	close(p.done)
}

// ctxErr is a context's end as a gRPC status.
func ctxErr(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }

// localClient is the gateway's side of a localStream.
type localClient struct{ p *localStream }

var _ agentpb.Agent_SessionClient = localClient{}

// Send hands req to the agent. A write's data (a WriteOp's, or the last
// write a CloseOp carries) is copied first: the
// gateway reuses its buffer as soon as Send returns, as gRPC, which
// serializes the message before returning, allows. Like gRPC's, it
// returns io.EOF once the stream has ended; Recv then tells why.
func (c localClient) Send(req *agentpb.SessionRequest) error {
	if req.GetWrite() != nil || req.GetClose().GetWrite() != nil {
		req = proto.CloneOf(req)
	}
	return c.SendLent(req)
}

// SendLent is Send without the copy: the gateway lends the agent its
// write's data until the agent has answered the request (the backend's
// lendingStream). The agent reads a write's data before it answers and
// keeps none of it after; a bulk upload's data then goes from the socket
// read to the agent's write without a copy between.
func (c localClient) SendLent(req *agentpb.SessionRequest) error {
	p := c.p
	select {
	case <-p.sendDone:
		return status.Error(codes.Internal, "send after CloseSend")
	case <-p.clientCtx.Done():
		// Nothing goes out after the cancel, as over gRPC: a commit
		// sent now must not reach the agent before its side ends.
		return io.EOF
	default:
	}
	select {
	case p.reqs <- req:
		return nil
	case <-p.done:
		return io.EOF
	case <-p.clientCtx.Done():
		return io.EOF
	}
}

// Recv returns the agent's next message. When the handler has returned
// and its messages are read, it returns io.EOF, or the handler's error as
// a status.
func (c localClient) Recv() (*agentpb.SessionResponse, error) {
	p := c.p
	select {
	case r := <-p.resps:
		return r, nil
	default:
	}
	select {
	case r := <-p.resps:
		return r, nil
	case <-p.done:
		select {
		case r := <-p.resps:
			return r, nil
		default:
		}
		if p.err != nil {
			return nil, p.err
		}
		return nil, io.EOF
	case <-p.clientCtx.Done():
		return nil, ctxErr(p.clientCtx)
	}
}

// Deliver implements the gateway's deliveringStream (backend/mux.go): the
// agent's replies go to deliver, called from the agent's goroutine as it
// sends each, instead of waiting in a queue for the gateway's receive loop
// to wake up; Recv then returns only how the stream ended. It must be
// called before the first Send, which orders it before the agent's first
// reply.
func (c localClient) Deliver(deliver func(*agentpb.SessionResponse)) { c.p.deliver = deliver }

// CloseSend tells the agent that no more requests come: its Recv returns
// io.EOF once it has read those sent.
func (c localClient) CloseSend() error {
	c.p.closeSend.Do(func() { close(c.p.sendDone) })
	return nil
}

func (c localClient) Context() context.Context     { return c.p.clientCtx }
func (c localClient) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (c localClient) Trailer() metadata.MD         { return metadata.MD{} }
func (c localClient) SendMsg(m any) error          { return c.Send(m.(*agentpb.SessionRequest)) }
func (c localClient) RecvMsg(m any) error          { return errLocalRecvMsg }
func (s localServer) SendMsg(m any) error          { return s.Send(m.(*agentpb.SessionResponse)) }
func (s localServer) RecvMsg(m any) error          { return errLocalRecvMsg }
func (s localServer) SetHeader(metadata.MD) error  { return nil }
func (s localServer) SendHeader(metadata.MD) error { return nil }
func (s localServer) SetTrailer(metadata.MD)       {}
func (s localServer) Context() context.Context     { return s.p.serverCtx }

// errLocalRecvMsg: a local stream's messages are typed; nothing in
// upgate calls RecvMsg on one.
var errLocalRecvMsg = errors.New("local Session stream: RecvMsg is not supported; use Recv")

// localServer is the agent's side of a localStream.
type localServer struct{ p *localStream }

var _ agentpb.Agent_SessionServer = localServer{}

// Recv returns the gateway's next request; io.EOF once the gateway has
// closed its side and every request sent before is read; a Canceled
// status when the gateway's context ended or the agent stops.
func (s localServer) Recv() (*agentpb.SessionRequest, error) {
	p := s.p
	// A cancel ends the agent's side at once, requests still queued or
	// not: the agent's own context follows the gateway's only through
	// an AfterFunc, a moment later.
	if p.clientCtx.Err() != nil {
		return nil, ctxErr(p.clientCtx)
	}
	if p.serverCtx.Err() != nil {
		return nil, ctxErr(p.serverCtx)
	}
	select {
	case r := <-p.reqs:
		return r, nil
	default:
	}
	select {
	case r := <-p.reqs:
		return r, nil
	case <-p.sendDone:
		select {
		case r := <-p.reqs:
			return r, nil
		default:
			return nil, io.EOF
		}
	case <-p.serverCtx.Done():
		return nil, ctxErr(p.serverCtx)
	}
}

// Send hands resp to the gateway; the agent does not touch a message
// after sending it.
func (s localServer) Send(resp *agentpb.SessionResponse) error {
	p := s.p
	if p.deliver != nil {
		if p.serverCtx.Err() != nil {
			return ctxErr(p.serverCtx)
		}
		p.deliver(resp)
		return nil
	}
	select {
	case p.resps <- resp:
		return nil
	case <-p.serverCtx.Done():
		return ctxErr(p.serverCtx)
	}
}
