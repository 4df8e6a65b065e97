package procs

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// monitorChildEnv makes the test binary a child for TestKeepMonitorAwake
// (TestMain): it calls KeepMonitorAwake, then reports on stdout.
const monitorChildEnv = "UPGATE_PROCS_MONITOR_CHILD"

// monitorIdle is how long the child stays idle while it counts its
// threads' sleeps.
const monitorIdle = time.Second

// monitorSettle is how long the child waits before it counts.
const monitorSettle = 200 * time.Millisecond

func TestMain(m *testing.M) {
	if os.Getenv(monitorChildEnv) != "" {
		monitorChild()
		return
	}
	os.Exit(m.Run())
}

// monitorChild prints "exec <pid>" before KeepMonitorAwake's exec (the
// image after it prints nothing there, GODEBUG then naming schedtrace),
// then one line: its pid, what KeepMonitorAwake reported, how many times
// its threads went to sleep (voluntary context switches, all threads)
// while idle for monitorIdle with one timer pending, and the GODEBUG it
// leaves for the processes it would start.
func monitorChild() {
	if !namesKey(os.Getenv("GODEBUG"), monitorKey) {
		fmt.Printf("exec %d\n", os.Getpid())
	}
	awake, err := KeepMonitorAwake(context.Background())
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	// Let the runtime's own start-up work end first (likely the
	// collector's background scavenger returning pages; not traced): a
	// child counting at once slept 39-40 times in its idle second in about
	// one run in five, 3-9 otherwise.
	debug.FreeOSMemory()
	time.Sleep(monitorSettle)
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(monitorIdle)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	sleeps := after.Nvcsw - before.Nvcsw
	godebug, set := os.LookupEnv("GODEBUG")
	fmt.Printf("pid %d awake %v sleeps %d godebug %q %v\n", os.Getpid(), awake, sleeps, godebug, set)
}

func TestMonitorEnv(t *testing.T) {
	if want := monitorKey + "=" + strconv.Itoa(MonitorPeriod); monitorSetting != want {
		t.Fatalf("monitorSetting = %q, want %q", monitorSetting, want)
	}
	for _, tc := range []struct {
		env, want []string
	}{
		{[]string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + monitorSetting}},
		{[]string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=" + monitorSetting}},
		{[]string{"GODEBUG=http2client=0,madvdontneed=1"}, []string{"GODEBUG=http2client=0,madvdontneed=1," + monitorSetting}},
		// Two entries: os.Getenv's (the first) is kept, the second goes.
		{[]string{"GODEBUG=gctrace=0", "B=2", "GODEBUG=x=1"}, []string{"B=2", "GODEBUG=gctrace=0," + monitorSetting}},
	} {
		if got := monitorEnv(tc.env); !slices.Equal(got, tc.want) {
			t.Errorf("monitorEnv(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
	for godebug, want := range map[string]bool{
		"":                       false,
		"gctrace=1":              false,
		"schedtrace=0":           true,
		"a=1,schedtrace=":        true,
		"xschedtrace=5":          false, // another key
		"schedtrace":             false, // no value: the runtime skips it
		"gctrace=1,schedtrace=5": true,
	} {
		if got := namesKey(godebug, monitorKey); got != want {
			t.Errorf("namesKey(%q) = %v, want %v", godebug, got, want)
		}
	}
}

func TestMonitorOn(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                                false,
		"schedtrace=0":                    false,
		"schedtrace=-5":                   false,
		"schedtrace=x":                    false,
		"schedtrace=9999999999":           false, // not an int32: the runtime skips it
		"schedtrace=1":                    true,
		"gctrace=1,schedtrace=2147483647": true,
		"schedtrace=1000,schedtrace=0":    false, // the last one wins
		"schedtrace=1000,schedtrace=x":    true,  // ... of those that parse
	} {
		if got := monitorOn(godebug); got != want {
			t.Errorf("monitorOn(%q) = %v, want %v", godebug, got, want)
		}
	}
}

// TestKeepMonitorAwake runs this test binary as a child that calls
// KeepMonitorAwake: it must re-execute itself in the same process with
// the setting in GODEBUG, and the setting must do what it is for, keep
// the runtime's monitor polling while the process is idle (the runtime
// reads it only at start, so only a new image can show it). The new image
// must give the processes it starts the GODEBUG it was given. An
// operator's own schedtrace=0 must be left alone, and with it the monitor
// sleeps.
func TestKeepMonitorAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("KeepMonitorAwake re-executes on Linux only")
	}
	type result struct {
		execPID, pid int
		awake        bool
		sleeps       int
		godebug      string
		set          bool
	}
	run := func(godebug string) (r result) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // the child idles for a second
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKeepMonitorAwake$")
		env := []string{monitorChildEnv + "=1"}
		if godebug != "" {
			env = append(env, "GODEBUG="+godebug)
		}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GODEBUG=") {
				env = append(env, kv)
			}
		}
		cmd.Env = env
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child (GODEBUG %q): %v; stdout:\n%s", godebug, err, out)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			line := sc.Text()
			if _, err := fmt.Sscanf(line, "exec %d", &r.execPID); err == nil {
				continue
			}
			if _, err := fmt.Sscanf(line, "pid %d awake %t sleeps %d godebug %q %t", &r.pid, &r.awake, &r.sleeps, &r.godebug, &r.set); err != nil {
				t.Fatalf("child (GODEBUG %q) printed %q", godebug, line)
			}
		}
		if r.pid == 0 {
			t.Fatalf("child (GODEBUG %q) printed no result:\n%s", godebug, out)
		}
		return r
	}

	awake := run("gctrace=0")
	if awake.execPID == 0 || awake.execPID != awake.pid || !awake.awake {
		t.Errorf("re-executed child: exec from pid %d, then pid %d awake %v; want one pid, awake", awake.execPID, awake.pid, awake.awake)
	}
	if awake.godebug != "gctrace=0" {
		t.Errorf("re-executed child leaves GODEBUG %q for its children, want %q", awake.godebug, "gctrace=0")
	}
	if r := run(""); r.execPID == 0 || !r.awake || r.set {
		t.Errorf("child without GODEBUG: exec from pid %d, awake %v, GODEBUG %q left set %v; want an exec, awake, GODEBUG unset", r.execPID, r.awake, r.godebug, r.set)
	}
	sleepy := run("schedtrace=0")
	if sleepy.execPID != 0 || sleepy.awake || sleepy.godebug != "schedtrace=0" {
		t.Errorf("child with schedtrace=0: exec from pid %d, awake %v, GODEBUG %q; want no exec, not awake, GODEBUG as given", sleepy.execPID, sleepy.awake, sleepy.godebug)
	}
	// Awake, the monitor sleeps 10 ms at a time: about 100 sleeps in the
	// idle second. In its deep sleep it waits for the one timer: 3-9
	// sleeps. Even after the child's settling, on a machine with both
	// CPUs busy a burst of 30-40 came on top in one run of ten (cause not
	// traced), and only on top: the sleepy child gets up to two more
	// looks, and its fewest sleeps count.
	for i := 0; i < 2 && sleepy.sleeps > 20; i++ {
		r := run("schedtrace=0")
		t.Logf("the sleepy child slept %d times; looked again: %d", sleepy.sleeps, r.sleeps)
		sleepy.sleeps = min(sleepy.sleeps, r.sleeps)
	}
	t.Logf("threads' sleeps in %v idle: %d awake, %d with schedtrace=0", monitorIdle, awake.sleeps, sleepy.sleeps)
	if awake.sleeps < 30 || sleepy.sleeps > 20 {
		t.Errorf("idle for %v, the child's threads slept %d times with the monitor kept awake and %d without; want at least 30 and at most 20",
			monitorIdle, awake.sleeps, sleepy.sleeps)
	}
}

func TestKeepMonitorAwakeStopped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("KeepMonitorAwake re-executes on Linux only")
	}
	t.Setenv("GODEBUG", "gctrace=0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	awake, err := KeepMonitorAwake(ctx) // must not exec the test binary
	if awake || err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("KeepMonitorAwake(done ctx) = %v, %v; want false and the context's error", awake, err)
	}
}
