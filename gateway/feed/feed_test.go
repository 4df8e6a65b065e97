package feed

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFeed(t *testing.T) {
	clock := time.Unix(1000, 0)
	f := New(3, func() time.Time { return clock })
	for i, k := range []string{"a", "b", "c", "d"} {
		if e := f.Publish(k, "alice", i); e.Seq != uint64(i+1) || !e.Time.Equal(clock) {
			t.Fatalf("Publish %s = %+v", k, e)
		}
	}
	if got := f.Recent(0, nil); len(got) != 3 || got[0].Kind != "b" || got[2].Kind != "d" {
		t.Fatalf("Recent keeps %v, want the latest 3", got)
	}
	if got := f.Recent(3, nil); len(got) != 1 || got[0].Seq != 4 {
		t.Fatalf("Recent after 3 = %v", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	onlyBob := func(e Event) bool { return e.User == "bob" }
	recent, ch := f.Subscribe(ctx, 0, onlyBob)
	if len(recent) != 0 {
		t.Errorf("recent bob events %v", recent)
	}
	f.Publish("x", "alice", nil)
	f.Publish("y", "bob", nil)
	select {
	case e := <-ch:
		if e.Kind != "y" || e.Seq != 6 {
			t.Errorf("subscriber got %+v, want bob's y (seq 6)", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	cancel()
	for range ch { // closed once ctx ends
	}
	if f.Seq() != 6 {
		t.Errorf("Seq = %d", f.Seq())
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	f := New(0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, ch := f.Subscribe(ctx, 0, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 * queueSize {
			f.Publish("tick", "", i)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	// It got the first ones and missed the rest: a gap in Seq tells it.
	e := <-ch
	if e.Seq != 1 {
		t.Errorf("first event seq %d", e.Seq)
	}
}

// TestFeedKeepsLatestOverManyWraps: after many times its size, the feed
// keeps exactly the latest events, oldest first.
func TestFeedKeepsLatestOverManyWraps(t *testing.T) {
	const size, total = 100, 1234
	f := New(size, nil)
	for i := range total {
		f.Publish("k", "u", i)
	}
	got := f.Recent(0, nil)
	if len(got) != size {
		t.Fatalf("keeps %d events, want %d", len(got), size)
	}
	for i, e := range got {
		if want := uint64(total - size + 1 + i); e.Seq != want || e.Data != int(want-1) {
			t.Fatalf("event %d: seq %d data %v, want seq %d", i, e.Seq, e.Data, want)
		}
	}
}

// BenchmarkPublish is what an event costs a full feed of the default
// size with no subscriber.
func BenchmarkPublish(b *testing.B) {
	f := New(0, nil)
	for range DefaultSize {
		f.Publish("k", "u", nil)
	}
	b.ResetTimer()
	for range b.N {
		f.Publish("k", "u", nil)
	}
}
