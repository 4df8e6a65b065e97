package agent

import (
	"sync/atomic"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// activity is one thing Busy counts: a gateway session (a Session
// stream), an Open stream of protocol v1, or v1's other calls together.
// Its fields are read by Busy from other goroutines.
type activity struct {
	lastWork atomic.Int64 // when a request last began or finished being served (UnixNano)
	running  atomic.Int32 // requests being served now
}

// begin and done bracket the serving of one request.
func (a *activity) begin() {
	a.running.Add(1)
	a.lastWork.Store(time.Now().UnixNano())
}

func (a *activity) done() {
	a.lastWork.Store(time.Now().UnixNano())
	a.running.Add(-1)
}

// busySince reports whether a is serving a request, or began or finished
// one at since (UnixNano) or later.
func (a *activity) busySince(since int64) bool {
	return a.running.Load() > 0 || a.lastWork.Load() >= since
}

// Busy reports how many gateway sessions are at work on this agent:
// serving a request now, or one began or finished within the last within.
// A session of protocol v2 is its Session stream. Older gateways'
// (protocol v1) open files count one each, and their other calls (path
// operations, listings) one together, however many such gateways there
// are. Streams open with nothing to do,
// the gateway's health checks (Status) and the AgentEvents stream do not
// count. `upgate agent` runs as many Go Ps as this says (internal/procs).
func (s *Server) Busy(within time.Duration) int {
	since := time.Now().Add(-within).UnixNano()
	n := 0
	if s.v1Calls.busySince(since) {
		n++
	}
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	for a := range s.activities {
		if a.busySince(since) {
			n++
		}
	}
	return n
}

func (s *Server) track(a *activity) {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	s.activities[a] = struct{}{}
}

func (s *Server) untrack(a *activity) {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	delete(s.activities, a)
}

// v1Call reports whether a call to method is one of protocol v1's that
// Busy counts in v1Calls: a path operation or a listing; not Status (the
// gateway's health check), nor the streams counted on their own (Session,
// Open) or never (AgentEvents).
func v1Call(method string) bool {
	switch method {
	case agentpb.Agent_Session_FullMethodName, agentpb.Agent_Open_FullMethodName, agentpb.Agent_Status_FullMethodName,
		agentpb.AgentEvents_Events_FullMethodName:
		return false
	}
	return true
}

// countV1 counts a call to method in v1Calls until the returned function
// is called, when it is one of protocol v1's (the interceptors of
// ServerOptions call it for every call).
func (s *Server) countV1(method string) (done func()) {
	if !v1Call(method) {
		return func() {}
	}
	s.v1Calls.begin()
	return s.v1Calls.done
}
