package gateway

import (
	"cmp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/upgate/upgate/gateway/feed"
)

// Feed event kinds the gateway publishes.
const (
	// EventTransfer is a transfer that ended; its Data is a TransferEvent.
	EventTransfer = "transfer"
	// EventSession is a session that logged in or ended after logging in;
	// its Data is a SessionEvent.
	EventSession = "session"
)

// TransferEvent is the Data of an EventTransfer: one file transfer that
// ended, as its log line tells it. Durations are in nanoseconds in JSON.
type TransferEvent struct {
	Session   string        `json:"session"`
	Protocol  string        `json:"protocol"`
	Path      string        `json:"path"`
	Direction string        `json:"direction"` // upload or download
	Bytes     int64         `json:"bytes"`
	Duration  time.Duration `json:"duration"` // from the open to the end of the close
	Result    string        `json:"result"`   // committed, completed, aborted or failed
	Error     string        `json:"error,omitempty"`
}

// SessionEvent is the Data of an EventSession. Event is "login" (Method
// says how) or "close" (Reason says why, Duration how long it lasted).
type SessionEvent struct {
	Session  string        `json:"session"`
	Protocol string        `json:"protocol"`
	Remote   string        `json:"remote"`
	Event    string        `json:"event"`
	Method   string        `json:"method,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	BytesIn  int64         `json:"bytes_in,omitempty"`
	BytesOut int64         `json:"bytes_out,omitempty"`
}

// TransferInfo is a file open now, for the sessions view.
type TransferInfo struct {
	Session   string    `json:"session"` // the control session
	User      string    `json:"user"`
	Protocol  string    `json:"protocol"`
	Path      string    `json:"path"`
	Direction string    `json:"direction"` // upload or download
	Bytes     int64     `json:"bytes"`     // moved so far
	Start     time.Time `json:"start"`
}

// transfers follows every file transfer of every session: the open ones
// for the sessions view, and each end into the feed, the save latency and
// the metrics.
type transfers struct {
	feed    *feed.Feed
	latency *SaveLatency
	metrics *Metrics

	// mu guards open.
	mu   sync.Mutex
	open map[*sessionFile]struct{}
}

func newTransfers(f *feed.Feed, l *SaveLatency, m *Metrics) *transfers {
	return &transfers{feed: f, latency: l, metrics: m, open: make(map[*sessionFile]struct{})}
}

// begin records f as open.
func (t *transfers) begin(f *sessionFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[f] = struct{}{}
}

// ended records f's end: result is its log line's; d runs from the open to
// the end of the close. A committed upload is a save.
func (t *transfers) ended(f *sessionFile, result string, err error, d time.Duration) {
	t.mu.Lock()
	delete(t.open, f)
	t.mu.Unlock()
	user, proto := f.sess.User(), f.sess.Protocol
	if f.direction == "upload" && result == "committed" {
		t.metrics.SaveSeconds.WithLabelValues(proto).Observe(d.Seconds())
		t.latency.Observe(user, proto, d)
	}
	ev := TransferEvent{Session: f.sess.ID, Protocol: proto, Path: f.Name(), Direction: f.direction,
		Bytes: f.bytes.Load(), Duration: d, Result: result}
	if err != nil {
		ev.Error = err.Error()
	}
	t.feed.Publish(EventTransfer, user, ev)
}

// OpenTransfers returns the files open now in every session (directories
// aside), by session then start.
func (g *Gateway) OpenTransfers() []TransferInfo {
	t := g.xfers
	t.mu.Lock()
	out := make([]TransferInfo, 0, len(t.open))
	for f := range t.open {
		out = append(out, TransferInfo{Session: f.sess.ID, User: f.sess.User(), Protocol: f.sess.Protocol,
			Path: f.Name(), Direction: f.direction, Bytes: f.bytes.Load(), Start: f.start})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b TransferInfo) int {
		x, _ := strconv.ParseUint(a.Session, 10, 64)
		y, _ := strconv.ParseUint(b.Session, 10, 64)
		return cmp.Or(cmp.Compare(x, y), a.Start.Compare(b.Start), cmp.Compare(a.Path, b.Path))
	})
	return out
}

// publishLogin records a login in the feed.
func (g *Gateway) publishLogin(s *Session, method string) {
	g.feed.Publish(EventSession, s.User(), SessionEvent{Session: s.ID, Protocol: s.Protocol,
		Remote: s.Remote.String(), Event: "login", Method: method})
}

// publishClose records in the feed the end of a session that logged in
// (connections that never did are left out: scanners would flood it).
func (g *Gateway) publishClose(s *Session) {
	if s.Parent != nil || s.User() == "" {
		return
	}
	g.feed.Publish(EventSession, s.User(), SessionEvent{Session: s.ID, Protocol: s.Protocol, Remote: s.Remote.String(),
		Event: "close", Reason: s.CloseReason(), Duration: time.Since(s.Start),
		BytesIn: s.bytesIn.Load() + s.childIn.Load(), BytesOut: s.bytesOut.Load() + s.childOut.Load()})
}
