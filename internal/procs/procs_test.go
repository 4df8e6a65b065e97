package procs

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// fixture is a Controller whose Busy, Set and clock the test drives.
type fixture struct {
	c    *Controller
	busy int
	now  time.Time
	sets []int
}

func newFixture(ceiling int) *fixture {
	f := &fixture{now: time.Unix(1_000_000, 0)}
	f.c = New(Config{
		Max:  ceiling,
		Busy: func() int { return f.busy },
		Set: func(n int) int {
			f.sets = append(f.sets, n)
			return 0
		},
		Now: func() time.Time { return f.now },
	})
	return f
}

// at advances the clock by d, sets Busy to busy and steps once.
func (f *fixture) at(d time.Duration, busy int) {
	f.now = f.now.Add(d)
	f.busy = busy
	f.c.step()
}

func TestFollowsBusySessions(t *testing.T) {
	f := newFixture(4)
	const tick = 100 * time.Millisecond
	steps := []struct {
		name string
		d    time.Duration
		busy int
		want int // Ps after the step
	}{
		{"the first step sets at least one", 0, 0, 1},
		{"one busy session stays at one", tick, 1, 1},
		{"a second busy session adds a P at once", tick, 2, 2},
		{"more sessions than CPUs stop at the ceiling", tick, 9, 4},
		{"a drop is held", tick, 1, 4},
		{"still held, the window's most is 3", tick, 3, 4},
		{"held until Hold has passed", time.Second, 1, 4},
		{"lowered to the window's most", time.Second, 1, 3},
		{"a new window starts below", tick, 1, 3},
		{"busy again cancels the drop", tick, 3, 3},
		{"a later drop is timed from itself", tick, 0, 3},
		{"", time.Second + 500*time.Millisecond, 0, 3},
		{"no session at all keeps one P", time.Second, 0, 1},
	}
	for _, s := range steps {
		f.at(s.d, s.busy)
		if f.c.cur != s.want {
			t.Fatalf("%s: %d Ps, want %d (sets so far %v)", s.name, f.c.cur, s.want, f.sets)
		}
	}
	if want := []int{1, 2, 4, 3, 1}; !slices.Equal(f.sets, want) {
		t.Errorf("Set was called with %v, want %v: a step that changes nothing must not stop the world", f.sets, want)
	}
}

func TestRunRestoresTheCeiling(t *testing.T) {
	var busy atomic.Int32
	busy.Store(1)
	sets := make(chan int, 100)
	c := New(Config{
		Max:      3,
		Busy:     func() int { return int(busy.Load()) },
		Set:      func(n int) int { sets <- n; return 0 },
		Interval: time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	next := func() int {
		t.Helper()
		select {
		case n := <-sets:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("no Set within 10 s")
			return 0
		}
	}
	if n := next(); n != 1 {
		t.Fatalf("first Set(%d), want 1: Run steps at once", n)
	}
	busy.Store(2)
	if n := next(); n != 2 {
		t.Fatalf("Set(%d) after a second session got busy, want 2", n)
	}
	cancel()
	<-done
	if n := next(); n != 3 {
		t.Fatalf("Run ended with Set(%d), want the ceiling 3", n)
	}
	select {
	case n := <-sets:
		t.Fatalf("Set(%d) after Run returned", n)
	default:
	}
}

func TestDefaults(t *testing.T) {
	c := New(Config{Busy: func() int { return 0 }})
	if got, want := c.Max(), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("Max() = %d, want the runtime's %d", got, want)
	}
	if c.cfg.Interval != 100*time.Millisecond || c.cfg.Hold != 2*time.Second {
		t.Errorf("Interval %v, Hold %v; want 100ms, 2s", c.cfg.Interval, c.cfg.Hold)
	}
}
