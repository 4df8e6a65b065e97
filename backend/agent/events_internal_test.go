package agent

import (
	"testing"

	"github.com/upgate/upgate/backend/agentpb"
)

// TestEventsRingKeepsLatest: once full, the log keeps exactly the latest
// keepEvents events, oldest first, with consecutive seqs.
func TestEventsRingKeepsLatest(t *testing.T) {
	e := &events{wake: make(chan struct{})}
	const total = 3*keepEvents + 17
	for range total {
		e.add(&agentpb.AgentEvent{})
	}
	if len(e.ring) != keepEvents {
		t.Fatalf("keeps %d events, want %d", len(e.ring), keepEvents)
	}
	for i, ev := range e.ring {
		if want := uint64(total - keepEvents + 1 + i); ev.Seq != want {
			t.Fatalf("event %d has seq %d, want %d", i, ev.Seq, want)
		}
	}
	batch, _, _ := e.after(total - 3)
	if len(batch) != 3 || batch[0].Seq != total-2 {
		t.Fatalf("after(%d): %d events from seq %d", total-3, len(batch), batch[0].GetSeq())
	}
}

// BenchmarkEventsAdd is what an event costs the log once it is full (every
// busy agent's steady state).
func BenchmarkEventsAdd(b *testing.B) {
	e := &events{wake: make(chan struct{})}
	for range keepEvents {
		e.add(&agentpb.AgentEvent{})
	}
	evs := make([]*agentpb.AgentEvent, b.N)
	for i := range evs {
		evs[i] = &agentpb.AgentEvent{}
	}
	b.ResetTimer()
	for i := range b.N {
		e.add(evs[i])
	}
}
