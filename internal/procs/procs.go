// Package procs sizes the Go runtime to the sessions at work: it runs as
// many Ps (runtime.GOMAXPROCS, the threads running Go code at once) as
// sessions are busy, at least one and at most what the runtime chose at
// start (the CPUs, or the container's CPU limit).
//
// Why: when one session is at work, its requests hand off from goroutine
// to goroutine (the frontend's reader, the agent's worker, the reply), and
// at every hand-off the scheduler wakes an idle P's thread, which finds
// nothing to do and sleeps again. On the 2-vCPU VM upgate is measured on,
// following the sessions made a single client's FTP file cycle 8-17%
// faster than two Ps, and an SFTP bulk upload use a third less CPU per GiB
// with the embedded agent (docs/benchmarks.md, issue 15). Sessions busy at
// once get a P each, up to the ceiling. A single session is held to one
// P: on that VM it was as fast or faster even for bulk uploads, but a
// client on another machine, which would leave the gateway both CPUs,
// could not be measured there.
//
// Both processes run one: `upgate serve` with its logged-in client
// sessions that work on files (gateway.Registry.Active), and `upgate
// agent` with the gateway sessions at work on it (agent.Server.Busy). Go
// gives a container limited to one CPU two Ps, so the agent sidecar ran
// two; following its sessions made the operations a gateway waits for on
// it 13-20% faster on that VM (an upload's open, which is mostly the
// temp file's creation, 4-8%).
//
// A Controller only ever changes GOMAXPROCS between 1 and its ceiling, and
// puts the runtime's own default back when Run returns. A process runs at
// most one: GOMAXPROCS is the process's, not a server's.
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"time"
)

// Config configures a Controller. Only Busy is required.
type Config struct {
	// Busy reports how many sessions are at work now (for the gateway:
	// Registry.Active; for the agent: Server.Busy). Required.
	Busy func() int

	// Max is the most Ps the controller runs. Zero means the runtime's
	// value when Run starts (runtime.GOMAXPROCS(0)), its default from the
	// CPU count or the container's CPU limit.
	Max int

	// Interval is how often Busy is read. Zero means 100 ms: a burst of
	// new sessions runs on fewer Ps for at most that long.
	Interval time.Duration

	// Hold is how long Busy must stay below the Ps running before they are
	// lowered, to the most Busy said in that time. Zero means 2 s. More
	// Ps are added at once.
	Hold time.Duration

	// Set sets the number of Ps, as runtime.GOMAXPROCS does. Nil means
	// runtime.GOMAXPROCS, and Run then ends with
	// runtime.SetDefaultGOMAXPROCS, which gives the runtime back its own
	// updates (a changed CPU limit); with Set given, Run ends with
	// Set(Max). Tests set it to watch a Controller without changing the
	// process they run in.
	Set func(n int) (previous int)

	// Now is the clock Hold is measured on. Nil means time.Now.
	Now func() time.Time

	// Logger receives a debug line per change. Nil means slog.Default().
	Logger *slog.Logger
}

// Controller follows Config.Busy with the number of Ps. Create it with
// New and run it with Run.
type Controller struct {
	cfg      Config
	cur      int       // Ps set last; 0 before the first step
	lowSince time.Time // when Busy first fell below cur; zero when it has not
	lowPeak  int       // the most Busy said since lowSince
}

// New returns a Controller for cfg, its zero fields defaulted. Max is read
// from the runtime here when zero. It panics if cfg.Busy is nil.
func New(cfg Config) *Controller {
	if cfg.Busy == nil {
		panic("procs: Config.Busy is nil")
	}
	if cfg.Max <= 0 {
		cfg.Max = runtime.GOMAXPROCS(0)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Controller{cfg: cfg}
}

// Follow starts a Controller for cfg in a goroutine of its own, unless the
// Ps are not its to set: a GOMAXPROCS environment variable the runtime
// obeys (a positive number) fixes them, or the ceiling is one P. It logs
// which on cfg.Logger, and returns the function that stops the controller
// and waits until the runtime's default is back: nil when none started.
// A process calls it once (see the package comment).
func Follow(cfg Config) (stop func()) {
	c := New(cfg)
	if n, ok := envProcs(); ok {
		c.cfg.Logger.Info("the GOMAXPROCS environment variable sets the Go Ps: they do not follow the busy sessions", "gomaxprocs", n)
		return nil
	}
	if c.Max() < 2 {
		c.cfg.Logger.Info("one CPU: the Go Ps stay at one", "max", c.Max())
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	c.cfg.Logger.Info("Go Ps follow the busy sessions", "max", c.Max())
	return func() { cancel(); <-done }
}

// envProcs reports the Ps a GOMAXPROCS environment variable sets, read as
// the runtime reads it: a positive decimal number, anything else ignored.
func envProcs() (int, bool) {
	n, err := strconv.ParseInt(os.Getenv("GOMAXPROCS"), 10, 32)
	return int(n), err == nil && n > 0
}

// Max is the ceiling: the most Ps the controller runs.
func (c *Controller) Max() int { return c.cfg.Max }

// Run follows Busy until ctx ends, then gives the runtime its default back
// (Set(Max) when Config.Set is given). It returns when it has. While it
// runs, the runtime's own updates (a changed CPU limit) are off and the
// ceiling stays what it was at New.
func (c *Controller) Run(ctx context.Context) {
	defer c.restore()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	c.step()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.step()
		}
	}
}

// step reads Busy once and sets the Ps it calls for.
func (c *Controller) step() {
	want := min(max(c.cfg.Busy(), 1), c.cfg.Max)
	now := c.cfg.Now()
	switch {
	case want > c.cur: // the first step too: cur is 0, want at least 1
		c.set(want)
	case want == c.cur:
		c.lowSince = time.Time{}
	case c.lowSince.IsZero():
		c.lowSince, c.lowPeak = now, want
	default:
		c.lowPeak = max(c.lowPeak, want)
		if now.Sub(c.lowSince) >= c.cfg.Hold {
			c.set(c.lowPeak)
		}
	}
}

// set runs n Ps; step calls it only for a change.
func (c *Controller) set(n int) {
	c.lowSince = time.Time{}
	if c.cfg.Set != nil {
		c.cfg.Set(n)
	} else {
		runtime.GOMAXPROCS(n)
	}
	c.cfg.Logger.Debug("Go Ps follow the busy sessions", "procs", n, "previous", c.cur, "max", c.cfg.Max)
	c.cur = n
}

func (c *Controller) restore() {
	if c.cfg.Set != nil {
		c.cfg.Set(c.cfg.Max)
	} else {
		runtime.SetDefaultGOMAXPROCS()
	}
	c.cur = 0
}
