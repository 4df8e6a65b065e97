package main

import (
	"log/slog"
	"os"

	"github.com/upgate/upgate/internal/procs"
)

// keepMonitorAwake applies cpu.awake_monitor (serve) or --awake-monitor
// (agent): with on, it re-executes the process with the Go runtime's
// monitor kept awake (procs.KeepMonitorAwake), and so returns only in the
// image that already has it, or when the exec failed; then it logs how
// the monitor runs. Call it before anything else starts.
func keepMonitorAwake(log *slog.Logger, on bool) {
	log = log.With("component", "procs")
	if on {
		if err := procs.KeepMonitorAwake(); err != nil {
			log.Warn("the Go runtime's monitor sleeps while idle", "err", err)
			return
		}
	}
	godebug := os.Getenv("GODEBUG")
	switch {
	case procs.MonitorAwake():
		log.Info("the Go runtime's monitor stays awake while idle", "godebug", godebug)
	case on:
		log.Info("GODEBUG sets schedtrace: the Go runtime's monitor sleeps while idle", "godebug", godebug)
	default:
		log.Debug("the Go runtime's monitor sleeps while idle", "godebug", godebug)
	}
}
