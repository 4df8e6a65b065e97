package procs

import (
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
// is the longest period the setting takes; a process that runs with it
// polls every 10 ms when idle, about a hundred wake-ups a second, and
// prints one scheduler line (starting "SCHED") to its standard error once
// the machine has been up for the period (the runtime's clock counts from
// boot), so at start on a machine up 24.8 days or more, and every period
// after that. A fatal runtime error also prints the scheduler's state.
const MonitorPeriod = 1<<31 - 1 // ms, 24.8 days: the largest int32

// monitorKey is the GODEBUG setting that keeps the monitor awake.
const monitorKey = "schedtrace"

// MonitorAwake reports whether the process runs with the runtime's
// monitor kept awake by its GODEBUG (a positive schedtrace, ours or the
// operator's).
func MonitorAwake() bool {
	v, _ := godebugValue(os.Getenv("GODEBUG"), monitorKey)
	n, err := strconv.ParseInt(v, 10, 32) // as the runtime parses it
	return err == nil && n > 0
}

// KeepMonitorAwake makes the process run with the runtime's monitor out
// of its deep sleep (see MonitorPeriod): unless GODEBUG already names
// schedtrace (the operator's choice, kept whatever its value), it
// replaces the process with the same program, arguments and environment
// plus schedtrace=MonitorPeriod in GODEBUG (execve of /proc/self/exe: the
// same binary, even one replaced on disk since, and the same process ID).
// Call it first thing in main's command, before anything starts that the
// exec would cut short. It returns nil without exec when there is nothing
// to do, and an error only when the exec failed, the process then going
// on as it was. Linux only: elsewhere it does nothing.
func KeepMonitorAwake() error {
	if runtime.GOOS != "linux" {
		return nil
	}
	env, ok := monitorEnv(os.Environ())
	if !ok {
		return nil
	}
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("re-executing with GODEBUG %s=%d: %w", monitorKey, MonitorPeriod, err)
}

// monitorEnv returns env with schedtrace=MonitorPeriod added to its
// GODEBUG, and true; or env and false when GODEBUG already names
// schedtrace. Every GODEBUG entry of env collapses into one, holding the
// value os.Getenv reports (the first entry's) and the setting appended.
func monitorEnv(env []string) ([]string, bool) {
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
	if _, ok := godebugValue(godebug, monitorKey); ok {
		return env, false
	}
	setting := fmt.Sprintf("%s=%d", monitorKey, MonitorPeriod)
	if godebug != "" {
		setting = godebug + "," + setting
	}
	return append(out, "GODEBUG="+setting), true
}

// godebugValue returns key's value in a GODEBUG string, read as the
// runtime reads it at start: comma-separated key=value pairs, the last
// one for a key winning.
func godebugValue(godebug, key string) (string, bool) {
	var value string
	found := false
	for field := range strings.SplitSeq(godebug, ",") {
		if k, v, ok := strings.Cut(field, "="); ok && k == key {
			value, found = v, true
		}
	}
	return value, found
}
