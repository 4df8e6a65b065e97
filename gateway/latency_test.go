package gateway_test

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/upgate/upgate/gateway"
)

// clock is a settable clock for SaveLatency.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)} }

func within(got, want time.Duration, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

// TestSaveLatencyPercentiles: p50 and p99 of a spread of saves are within
// the buckets' 12%, the maximum is exact, and so are saves that all took
// the same time and the p99 of fewer than 100.
func TestSaveLatencyPercentiles(t *testing.T) {
	c := newClock()
	l := gateway.NewSaveLatency(c.now)
	for i := 1; i <= 1000; i++ {
		l.Observe("alice", "sftp", time.Duration(i)*time.Millisecond)
	}
	for range 3 {
		l.Observe("bob", "ftp", 37*time.Millisecond)
	}
	for i := 10; i >= 1; i-- {
		l.Observe("carol", "sftp", time.Duration(i)*time.Millisecond)
	}
	sums := l.Summaries()
	if len(sums) != 3 || sums[0].User != "alice" || sums[1].User != "bob" {
		t.Fatalf("summaries: %+v", sums)
	}
	a := sums[0]
	if a.Protocol != "sftp" || a.Count != 1000 || a.Max != time.Second {
		t.Errorf("alice: count %d max %v", a.Count, a.Max)
	}
	if !within(a.P50, 500*time.Millisecond, 0.12) || !within(a.P99, 990*time.Millisecond, 0.12) {
		t.Errorf("alice: p50 %v (want ~500ms), p99 %v (want ~990ms)", a.P50, a.P99)
	}
	if b := sums[1]; b.Count != 3 || b.P50 != 37*time.Millisecond || b.P99 != 37*time.Millisecond || b.Max != 37*time.Millisecond {
		t.Errorf("bob: %+v", b)
	}
	// Nearest rank: p99 of ten saves is the slowest of them.
	if c := sums[2]; c.P99 != 10*time.Millisecond || !within(c.P50, 5*time.Millisecond, 0.12) {
		t.Errorf("carol: p50 %v, p99 %v", c.P50, c.P99)
	}
}

// TestSaveLatencyBucketAccuracy: wherever the bulk of the saves lies, from
// under a millisecond to minutes, the median is within 12% of it.
func TestSaveLatencyBucketAccuracy(t *testing.T) {
	for _, d := range []time.Duration{
		150 * time.Microsecond, 300 * time.Microsecond, time.Millisecond, 1300 * time.Microsecond, 7 * time.Millisecond, 42 * time.Millisecond,
		250 * time.Millisecond, 999 * time.Millisecond, 3 * time.Second, 47 * time.Second, 3 * time.Minute, 11 * time.Minute,
	} {
		t.Run(d.String(), func(t *testing.T) {
			l := gateway.NewSaveLatency(newClock().now)
			l.Observe("u", "ftp", 0)
			l.Observe("u", "ftp", 20*time.Minute)
			for range 98 {
				l.Observe("u", "ftp", d)
			}
			s := l.Summaries()[0]
			if !within(s.P50, d, 0.12) {
				t.Errorf("p50 %v, want %v within 12%%", s.P50, d)
			}
			if s.Max != 20*time.Minute {
				t.Errorf("max %v", s.Max)
			}
		})
	}
}

// TestSaveLatencyWindow: the series has one point per slot, saves move
// through it as time passes, and a pair without saves in the window is
// forgotten.
func TestSaveLatencyWindow(t *testing.T) {
	c := newClock()
	l := gateway.NewSaveLatency(c.now)
	l.Observe("alice", "ftp", 10*time.Millisecond)
	c.add(gateway.LatencySlot)
	l.Observe("alice", "ftp", 20*time.Millisecond)
	l.Observe("alice", "ftp", 30*time.Millisecond)
	s := l.Summaries()[0]
	slots := int(gateway.LatencyWindow / gateway.LatencySlot)
	if len(s.Series) != slots || s.Count != 3 {
		t.Fatalf("%d points, count %d: %+v", len(s.Series), s.Count, s)
	}
	last, prev := s.Series[slots-1], s.Series[slots-2]
	if last.Count != 2 || prev.Count != 1 || prev.P50 != 10*time.Millisecond || last.P99 != 30*time.Millisecond {
		t.Errorf("last points: %+v %+v", prev, last)
	}
	if got := last.Start.Sub(prev.Start); got != gateway.LatencySlot {
		t.Errorf("points %v apart", got)
	}
	if last.Start.After(c.now()) || c.now().Sub(last.Start) >= gateway.LatencySlot {
		t.Errorf("last point starts %v, now %v", last.Start, c.now())
	}

	// Once the first slot leaves the window, its save no longer counts.
	c.add(gateway.LatencyWindow - gateway.LatencySlot)
	if s := l.Summaries(); len(s) != 1 || s[0].Count != 2 || !within(s[0].P50, 20*time.Millisecond, 0.12) || s[0].Max != 30*time.Millisecond {
		t.Errorf("after the first slot left: %+v", s)
	}
	c.add(gateway.LatencySlot)
	if s := l.Summaries(); len(s) != 0 || l.Len() != 0 {
		t.Errorf("after the window: %+v, %d pairs held", s, l.Len())
	}

	// A slot reused by the ring starts empty.
	l.Observe("alice", "ftp", 5*time.Millisecond)
	if s := l.Summaries(); len(s) != 1 || s[0].Count != 1 || s[0].Max != 5*time.Millisecond {
		t.Errorf("after reuse: %+v", s)
	}
}

// TestSaveLatencyMemoryBounded: memory grows with the pairs that saved in
// the window, a few KiB each, and falls back when they stop saving: a save
// by anyone prunes the others once the window has passed.
func TestSaveLatencyMemoryBounded(t *testing.T) {
	const pairs = 5000
	c := newClock()
	l := gateway.NewSaveLatency(c.now)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range pairs {
		l.Observe(fmt.Sprintf("user%04d", i), "sftp", time.Duration(i)*time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPair := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / pairs
	t.Logf("save latency: %d bytes per user and protocol (%d pairs)", perPair, pairs)
	if perPair > 8<<10 {
		t.Errorf("%d bytes per pair", perPair)
	}
	c.add(gateway.LatencyWindow)
	l.Observe("alice", "sftp", time.Millisecond)
	if n := l.Len(); n != 1 {
		t.Errorf("%d pairs held after the window passed", n)
	}
	runtime.KeepAlive(l)
}

// BenchmarkSaveLatency measures recording one save and summarizing 100
// users; it reports the bytes held per user/protocol pair.
func BenchmarkSaveLatency(b *testing.B) {
	l := gateway.NewSaveLatency(nil)
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("user%02d", i)
	}
	b.Run("Observe", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			l.Observe(users[i%len(users)], "sftp", time.Duration(i%5000)*time.Millisecond)
		}
	})
	b.Run("Summaries100", func(b *testing.B) {
		for b.Loop() {
			if len(l.Summaries()) != len(users) {
				b.Fatal("summaries lost users")
			}
		}
	})
}
