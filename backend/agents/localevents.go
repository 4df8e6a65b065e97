package agents

import (
	"context"
	"errors"

	"google.golang.org/grpc/metadata"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
)

// localEvents follows an embedded agent's events without gRPC's
// transport: the agent's own Events handler runs on the watch's goroutine,
// and each event it sends goes straight to the watch (eventSource).
//
// Why: over loopback gRPC, every batch of events the agent sends (a
// mirror's commits, a few each 2 ms) costs HTTP/2 framing, protobuf both
// ways, a socket write and read, and hand-offs between four transport
// goroutines, on the CPUs the transfers themselves need. Measured on a
// 2-vCPU VM with an FTP client storing files in a loop, that was about a
// tenth of the gateway's CPU per file (issue 15). The handler, its
// resume point and its Hello are the same code either way; only the
// transport differs, as for Session streams (localSessions).
type localEvents struct {
	srv *agent.Server
	// ctx ends when the embedded agent stops, which ends the stream (the
	// pool ends its watches first, so only a bug would show it).
	ctx context.Context
}

// events is the embedded agent's event source for the pool's watch.
func (e *embeddedAgent) events() eventSource {
	return localEvents{srv: e.server, ctx: e.sessions.ctx}
}

func (l localEvents) follow(ctx context.Context, req *agentpb.EventsRequest, fn func(*agentpb.AgentEvent)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.ctx, cancel)
	defer stop()
	return l.srv.Events(req, localEventStream{ctx: sctx, fn: fn})
}

// localEventStream is the agent's side of an in-process Events stream.
type localEventStream struct {
	ctx context.Context
	fn  func(*agentpb.AgentEvent)
}

// Send hands ev to the watch. The agent keeps ev in its ring and sends
// the same message to every gateway following it: the watch reads it
// (convert copies what it keeps) and neither changes nor keeps it.
func (s localEventStream) Send(ev *agentpb.AgentEvent) error {
	if err := s.ctx.Err(); err != nil {
		return ctxErr(s.ctx)
	}
	s.fn(ev)
	return nil
}

func (s localEventStream) Context() context.Context     { return s.ctx }
func (s localEventStream) SetHeader(metadata.MD) error  { return nil }
func (s localEventStream) SendHeader(metadata.MD) error { return nil }
func (s localEventStream) SetTrailer(metadata.MD)       {}
func (s localEventStream) SendMsg(m any) error          { return s.Send(m.(*agentpb.AgentEvent)) }
func (s localEventStream) RecvMsg(any) error            { return errLocalEventsRecvMsg }

// errLocalEventsRecvMsg: an Events stream's client sends one request,
// which the handler gets as its argument.
var errLocalEventsRecvMsg = errors.New("local Events stream: the request is the handler's argument; there is nothing to receive")
