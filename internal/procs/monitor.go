package procs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// The runtime's system monitor (sysmon) is a thread of its own that
// retakes Ps from long system calls, preempts long-running goroutines and
// polls the network when no P has for 10 ms. When it finds every P idle it
// goes into a deep sleep (runtime/proc.go, sysmon: "sysmon should not
// enter deep sleep if schedtrace is enabled"), and the first system call
// after that wakes it (entersyscallWakeSysmon), after which it polls every
// 20 us for a millisecond. A server that waits for its client between
// requests is idle at every request's start, so every request pays that
// wake-up: a futex wake of another thread and fifty timer wake-ups.
//
// On the 2-vCPU VM upgate is measured on, that was most of a loopback
// round trip between two idle Go processes at one P each: 75-94 us
// against 26-38 us with the monitor kept awake, for half the CPU time
// (BenchmarkRoundTrip in backend/agents; docs/benchmarks.md, issue 15).
//
// The runtime keeps the monitor out of its deep sleep only while it has a
// scheduler trace to print (GODEBUG=schedtrace=N, in milliseconds), and
// reads that setting once, at start, from the environment. MonitorPeriod
// is the longest period the setting takes. What a process that runs with
// it pays, besides polling every 10 ms when idle (about a hundred wake-ups
// a second):
//   - one scheduler line (starting "SCHED") on its standard error once the
//     machine has been up for the period (the runtime's clock counts from
//     boot), so at start on a machine up 24.8 days or more, and every
//     period after that;
//   - on a crash (an unrecovered panic, a fatal error, SIGQUIT), the
//     scheduler's state before the panic's message: a line per P, thread
//     and goroutine;
//   - a fatal error the runtime raises while it holds its scheduler lock
//     (thread exhaustion is one) hangs the process instead of ending it,
//     since printing that state takes the same lock.
//
// The last is why keeping the monitor awake is a choice an operator makes
// (cpu.awake_monitor, --awake-monitor), not a default.
const MonitorPeriod = 1<<31 - 1 // ms, 24.8 days: the largest int32

// monitorKey is the GODEBUG setting that keeps the monitor awake.
const monitorKey = "schedtrace"

// monitorSetting is what KeepMonitorAwake adds to GODEBUG: monitorKey at
// MonitorPeriod (TestMonitorEnv checks that it is).
const monitorSetting = "schedtrace=2147483647"

// KeepMonitorAwake makes the process run with the runtime's monitor out
// of its deep sleep (see MonitorPeriod), and reports whether it does.
//
// Unless GODEBUG already names schedtrace (the operator's choice, kept
// whatever its value), it replaces the process with the same program,
// arguments and environment plus schedtrace=MonitorPeriod in GODEBUG
// (execve of /proc/self/exe: the same binary, even one replaced on disk
// since, and the same process ID), and so returns only in the new image,
// or when the exec failed, with the error (the process then goes on as it
// was). In the new image it takes its setting back out of GODEBUG, so that
// the processes it starts (hooks) run as they would have.
//
// Call it first thing in main's command, before anything starts that the
// exec would cut short. It does not exec once ctx is done: a stop signal
// caught before would be lost with the image. Linux only: elsewhere it
// does nothing and reports what GODEBUG says.
func KeepMonitorAwake(ctx context.Context) (bool, error) {
	godebug, _ := os.LookupEnv("GODEBUG")
	if namesKey(godebug, monitorKey) || runtime.GOOS != "linux" {
		awake := monitorOn(godebug)
		if before, ours := strings.CutSuffix(godebug, monitorSetting); ours && (before == "" || strings.HasSuffix(before, ",")) {
			// The runtime has read it; the children need not.
			if before = strings.TrimSuffix(before, ","); before == "" {
				os.Unsetenv("GODEBUG")
			} else {
				os.Setenv("GODEBUG", before)
			}
		}
		return awake, nil
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("not re-executing with GODEBUG %s: %w", monitorSetting, context.Cause(ctx))
	}
	env := monitorEnv(os.Environ())
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	return false, fmt.Errorf("re-executing with GODEBUG %s: %w", monitorSetting, err)
}

// monitorEnv returns env with schedtrace=MonitorPeriod added to its
// GODEBUG, which must not name schedtrace. Every GODEBUG entry of env
// collapses into one: the first entry's value (what os.Getenv reports)
// with the setting appended.
func monitorEnv(env []string) []string {
	var godebug string
	found := false
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !found {
				godebug, found = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	if godebug != "" {
		return append(out, "GODEBUG="+godebug+","+monitorSetting)
	}
	return append(out, "GODEBUG="+monitorSetting)
}

// monitorOn reports whether a GODEBUG string keeps the monitor awake, as
// the runtime reads it at start: the last schedtrace whose value parses as
// a 32-bit decimal number wins (others are skipped), and it must be
// positive.
func monitorOn(godebug string) bool {
	var n int64
	for field := range strings.SplitSeq(godebug, ",") {
		if k, v, ok := strings.Cut(field, "="); ok && k == monitorKey {
			if x, err := strconv.ParseInt(v, 10, 32); err == nil {
				n = x
			}
		}
	}
	return n > 0
}

// namesKey reports whether a GODEBUG string (comma-separated key=value
// pairs) sets key.
func namesKey(godebug, key string) bool {
	for field := range strings.SplitSeq(godebug, ",") {
		if k, _, ok := strings.Cut(field, "="); ok && k == key {
			return true
		}
	}
	return false
}
