package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/feed"
)

// The page's stream sends the whole state (pageState) as an SSE
// "snapshot" event whenever it changed: at once (at most every
// streamMinGap) after an event in the feed, such as a login, a session's
// end or a transfer's, and otherwise on a streamPoll tick (bytes moving, a
// connection closed before it logged in). A closed session is gone from
// the page within streamPoll.
const (
	streamPoll   = 500 * time.Millisecond
	streamMinGap = 100 * time.Millisecond
	streamPing   = 15 * time.Second
	// streamMaxAge ends a stream, so the browser reconnects and its cookie
	// is checked again.
	streamMaxAge = 10 * time.Minute
	streamWrite  = 10 * time.Second // bound on one write to a slow client
	maxStreams   = 32
	recentShown  = 50 // transfers, and other events, on the page
	summaryLen   = 200
)

// pageState is what the page shows. Durations are in nanoseconds.
type pageState struct {
	Sessions  []pageSession            `json:"sessions"`
	Agents    []gateway.AgentStatus    `json:"agents"`
	Latency   []gateway.LatencySummary `json:"latency"`
	Window    time.Duration            `json:"window"`    // of Latency
	Slot      time.Duration            `json:"slot"`      // between two points of a Latency series
	Transfers []feed.Event             `json:"transfers"` // newest first; Data is a gateway.TransferEvent
	Events    []pageEvent              `json:"events"`    // newest first: hook runs, commits, ...
}

// pageSession is a session with its socket's TCP state and its open files.
// A control session's bytes include those of its live data connections.
type pageSession struct {
	gateway.SessionInfo
	TCP   *gateway.TCPState      `json:"tcp,omitempty"`
	Files []gateway.TransferInfo `json:"files,omitempty"`
}

// pageEvent is an event of another kind than transfer and session, with a
// one-line summary of its Data.
type pageEvent struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	User    string    `json:"user,omitempty"`
	Summary string    `json:"summary"`
}

// state gathers the page's state now.
func (p *page) state() pageState {
	st := pageState{Agents: p.gw.Agents(), Latency: p.gw.SaveLatency().Summaries(),
		Window: gateway.LatencyWindow, Slot: gateway.LatencySlot}

	live := p.gw.Registry().Sessions()
	files := map[string][]gateway.TransferInfo{}
	for _, f := range p.gw.OpenTransfers() {
		files[f.Session] = append(files[f.Session], f)
	}
	all := make([]pageSession, 0, len(live))
	children := map[string][]pageSession{}
	for _, s := range live {
		ps := pageSession{SessionInfo: s.Info(), Files: files[s.ID]}
		if tcp, err := s.TCPState(); err == nil {
			ps.TCP = &tcp
		}
		if ps.Parent != "" {
			children[ps.Parent] = append(children[ps.Parent], ps)
		}
		all = append(all, ps)
	}
	// Data connections follow their control session, whose bytes count
	// theirs; those whose control session just ended stay where they are.
	st.Sessions = make([]pageSession, 0, len(all))
	for _, ps := range all {
		switch {
		case ps.Parent == "":
			for _, c := range children[ps.ID] {
				ps.BytesIn += c.BytesIn
				ps.BytesOut += c.BytesOut
			}
			st.Sessions = append(st.Sessions, ps)
			st.Sessions = append(st.Sessions, children[ps.ID]...)
			delete(children, ps.ID)
		case children[ps.Parent] != nil && !slices.ContainsFunc(all, func(o pageSession) bool { return o.ID == ps.Parent }):
			st.Sessions = append(st.Sessions, ps)
		}
	}

	recent := p.gw.Feed().Recent(0, func(e feed.Event) bool { return e.Kind != gateway.EventSession })
	for i := len(recent) - 1; i >= 0 && (len(st.Transfers) < recentShown || len(st.Events) < recentShown); i-- {
		e := recent[i]
		switch {
		case e.Kind == gateway.EventTransfer:
			if len(st.Transfers) < recentShown {
				st.Transfers = append(st.Transfers, e)
			}
		case len(st.Events) < recentShown:
			st.Events = append(st.Events, pageEvent{Seq: e.Seq, Time: e.Time, Kind: e.Kind, User: e.User, Summary: summarize(e.Data)})
		}
	}
	return st
}

// summarize renders an event's Data on one line: an object as its scalar
// fields' key=value in key order, objects and lists within it as JSON;
// anything else as JSON. It is cut to summaryLen characters.
func summarize(data any) string {
	b, err := json.Marshal(data)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	var fields map[string]json.RawMessage
	s := string(b)
	if json.Unmarshal(b, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			v := string(fields[k])
			var str string
			if json.Unmarshal(fields[k], &str) == nil && !strings.ContainsAny(str, " \t\"=") {
				v = str
			}
			parts = append(parts, k+"="+v)
		}
		s = strings.Join(parts, " ")
	}
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > summaryLen {
		s = string([]rune(s)[:summaryLen-1]) + "…"
	}
	return s
}

// stream serves the page's Server-Sent Events.
func (p *page) stream(w http.ResponseWriter, r *http.Request) {
	if p.streams.Add(1) > maxStreams {
		p.streams.Add(-1)
		http.Error(w, "too many page streams open", http.StatusServiceUnavailable)
		return
	}
	defer p.streams.Add(-1)
	ctx, cancel := context.WithTimeout(r.Context(), streamMaxAge)
	defer cancel()
	f := p.gw.Feed()
	_, events := f.Subscribe(ctx, f.Seq(), nil)
	defer func() {
		cancel()
		for range events { // the feed closes it once ctx is done
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWrite))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 1000\n\n")) {
		return
	}

	poll := time.NewTicker(streamPoll)
	defer poll.Stop()
	ping := time.NewTicker(streamPing)
	defer ping.Stop()
	gap := time.NewTimer(streamMinGap)
	defer gap.Stop()
	var last []byte
	var built time.Time
	due := true
	for {
		if due {
			if wait := streamMinGap - time.Since(built); wait > 0 {
				gap.Reset(wait)
			} else {
				due, built = false, time.Now()
				body, err := json.Marshal(p.state())
				if err != nil {
					p.log.Error("page state", "err", err)
					return
				}
				if !bytes.Equal(body, last) {
					last = body
					now, _ := time.Now().MarshalJSON()
					msg := make([]byte, 0, len(body)+64)
					msg = append(msg, `event: snapshot`+"\n"+`data: {"now":`...)
					msg = append(msg, now...)
					msg = append(msg, `,"state":`...)
					msg = append(msg, body...)
					msg = append(msg, "}\n\n"...)
					if !write(msg) {
						return
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			due = true
		case <-poll.C:
			due = true
		case <-gap.C:
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}
