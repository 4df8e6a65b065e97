// Package feed is the gateway's live record of what happens: transfers
// that end, sessions that come and go, agents' commits and hook runs. It
// keeps the latest events in a ring and hands them to subscribers (the
// operator page's and /api/events' Server-Sent Events, `upgate events
// --follow`) as they are published.
//
// A subscriber never slows a publisher: each has a bounded queue, and one
// that falls behind misses events, which it learns from a gap in their
// sequence numbers (Event.Seq), as an SSE client does from its
// Last-Event-ID.
package feed

import (
	"context"
	"sync"
	"time"
)

// Event is one thing that happened.
type Event struct {
	// Seq numbers the events of one Feed from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Time is when the event was published.
	Time time.Time `json:"time"`
	// Kind says what happened, and what Data holds: "transfer",
	// "session", "commit", "hook", ...
	Kind string `json:"kind"`
	// User is the user the event concerns, "" if none.
	User string `json:"user,omitempty"`
	// Data is the event's detail, a JSON-encodable value of Kind's type.
	Data any `json:"data"`
}

// DefaultSize is how many events a Feed keeps when New is given 0.
const DefaultSize = 1024

// queueSize bounds what one subscriber may be behind.
const queueSize = 256

// Feed is a ring of recent events with subscribers. The zero value is not
// usable; New makes one. It is safe for concurrent use.
type Feed struct {
	now func() time.Time

	// mu guards everything below.
	mu   sync.Mutex
	ring []Event // the latest events, oldest first
	size int
	seq  uint64
	subs map[*sub]struct{}
}

type sub struct {
	ch   chan Event
	keep func(Event) bool
}

// New returns a Feed that keeps the latest size events (0: DefaultSize).
// now is its clock; nil means time.Now.
func New(size int, now func() time.Time) *Feed {
	if size <= 0 {
		size = DefaultSize
	}
	if now == nil {
		now = time.Now
	}
	return &Feed{now: now, size: size, subs: make(map[*sub]struct{})}
}

// Publish records an event and hands it to every subscriber that wants
// it and has room; it returns the event as recorded.
func (f *Feed) Publish(kind, user string, data any) Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	e := Event{Seq: f.seq, Time: f.now(), Kind: kind, User: user, Data: data}
	// Dropping the oldest moves the slice's start instead of shifting
	// every kept event down one; append copies the kept ones to a new
	// array now and then, when the old one's end is reached.
	f.ring = append(f.ring, e)
	if len(f.ring) > f.size {
		f.ring[0] = Event{}
		f.ring = f.ring[1:]
	}
	for s := range f.subs {
		if s.keep != nil && !s.keep(e) {
			continue
		}
		select {
		case s.ch <- e:
		default: // behind: it sees the gap in Seq
		}
	}
	return e
}

// Recent returns the kept events after seq that keep accepts (nil keeps
// all), oldest first.
func (f *Feed) Recent(after uint64, keep func(Event) bool) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recentLocked(after, keep)
}

func (f *Feed) recentLocked(after uint64, keep func(Event) bool) []Event {
	var out []Event
	for _, e := range f.ring {
		if e.Seq > after && (keep == nil || keep(e)) {
			out = append(out, e)
		}
	}
	return out
}

// Subscribe returns the kept events after seq that keep accepts, and a
// channel of the ones published from then on, until ctx ends; then the
// channel is closed. No event is both in the slice and on the channel,
// and none between them is lost unless the subscriber falls more than a
// few hundred events behind.
func (f *Feed) Subscribe(ctx context.Context, after uint64, keep func(Event) bool) ([]Event, <-chan Event) {
	s := &sub{ch: make(chan Event, queueSize), keep: keep}
	f.mu.Lock()
	recent := f.recentLocked(after, keep)
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	out := make(chan Event)
	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-s.ch:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return recent, out
}

// Seq is the sequence number of the latest event, 0 before the first.
func (f *Feed) Seq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}
