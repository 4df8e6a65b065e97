package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/upgate/upgate/internal/procs"
)

// monitorAwakeLine is what serve and agent log when they run with the Go
// runtime's monitor kept awake.
const monitorAwakeLine = "the Go runtime's monitor stays awake while idle"

// keepMonitorAwake applies cpu.awake_monitor (serve) or --awake-monitor
// (agent): with on, it re-executes the process with the Go runtime's
// monitor kept awake (procs.KeepMonitorAwake), and so returns in the image
// that has it, or when the exec failed or ctx ended first; then it logs
// how the monitor runs. Call it before anything else starts.
func keepMonitorAwake(ctx context.Context, log *slog.Logger, on bool) {
	log = log.With("component", "procs")
	godebug := os.Getenv("GODEBUG")
	if !on {
		log.Debug("the Go runtime's monitor runs as GODEBUG says", "godebug", godebug)
		return
	}
	awake, err := procs.KeepMonitorAwake(ctx)
	switch {
	case err != nil:
		log.Warn("the Go runtime's monitor sleeps while idle", "err", err)
	case awake:
		log.Info(monitorAwakeLine, "schedtrace_ms", procs.MonitorPeriod)
	default:
		log.Info("GODEBUG sets schedtrace: the Go runtime's monitor sleeps while idle", "godebug", godebug)
	}
}
