package procs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

func TestMain(m *testing.M) {
	if os.Getenv(monitorChildEnv) != "" {
		monitorChild()
		return
	}
	os.Exit(m.Run())
}

// monitorChild prints "exec <pid>" before KeepMonitorAwake's exec (the
// image after it prints nothing there, GODEBUG then naming schedtrace),
// then one line: its pid, whether MonitorAwake, and how many times its
// threads went to sleep (voluntary context switches, all threads) while
// idle for monitorIdle with one timer pending.
func monitorChild() {
	awake := MonitorAwake()
	if _, ok := godebugValue(os.Getenv("GODEBUG"), monitorKey); !ok {
		fmt.Printf("exec %d\n", os.Getpid())
	}
	if err := KeepMonitorAwake(); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	time.Sleep(monitorIdle)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	fmt.Printf("pid %d awake %v sleeps %d\n", os.Getpid(), awake, after.Nvcsw-before.Nvcsw)
}

func TestMonitorEnv(t *testing.T) {
	want := "schedtrace=" + strconv.Itoa(MonitorPeriod)
	for _, tc := range []struct {
		env    []string
		want   []string
		change bool
	}{
		{[]string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + want}, true},
		{[]string{"GODEBUG=", "A=1"}, []string{"A=1", "GODEBUG=" + want}, true},
		{[]string{"GODEBUG=http2client=0,madvdontneed=1"}, []string{"GODEBUG=http2client=0,madvdontneed=1," + want}, true},
		// Two entries: os.Getenv's (the first) is kept, the second goes.
		{[]string{"GODEBUG=gctrace=0", "B=2", "GODEBUG=x=1"}, []string{"B=2", "GODEBUG=gctrace=0," + want}, true},
		// The operator's schedtrace stands, whatever its value.
		{[]string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{[]string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		// A key that only ends in schedtrace is another key.
		{[]string{"GODEBUG=xschedtrace=5"}, []string{"GODEBUG=xschedtrace=5," + want}, true},
	} {
		got, change := monitorEnv(tc.env)
		if change != tc.change || !slices.Equal(got, tc.want) {
			t.Errorf("monitorEnv(%q) = %q, %v; want %q, %v", tc.env, got, change, tc.want, tc.change)
		}
	}
}

func TestMonitorAwake(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                                false,
		"schedtrace=0":                    false,
		"schedtrace=-5":                   false,
		"schedtrace=x":                    false,
		"schedtrace=9999999999":           false, // not an int32: the runtime ignores it
		"schedtrace=1":                    true,
		"gctrace=1,schedtrace=2147483647": true,
		"schedtrace=1000,schedtrace=0":    false, // the last one wins
	} {
		t.Setenv("GODEBUG", godebug)
		if got := MonitorAwake(); got != want {
			t.Errorf("GODEBUG=%q: MonitorAwake() = %v, want %v", godebug, got, want)
		}
	}
}

// TestKeepMonitorAwake runs this test binary as a child that calls
// KeepMonitorAwake: it must re-execute itself in the same process with
// the setting in GODEBUG, and the setting must do what it is for, keep
// the runtime's monitor polling while the process is idle (the runtime
// reads it only at start, so only a new image can show it). An operator's
// own schedtrace=0 must be left alone, and with it the monitor sleeps.
func TestKeepMonitorAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("KeepMonitorAwake re-executes on Linux only")
	}
	run := func(godebug string) (execPID, pid int, awake bool, sleeps int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKeepMonitorAwake$")
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
			if _, err := fmt.Sscanf(line, "exec %d", &execPID); err == nil {
				continue
			}
			if _, err := fmt.Sscanf(line, "pid %d awake %t sleeps %d", &pid, &awake, &sleeps); err != nil {
				t.Fatalf("child (GODEBUG %q) printed %q", godebug, line)
			}
		}
		if pid == 0 {
			t.Fatalf("child (GODEBUG %q) printed no result:\n%s", godebug, out)
		}
		return execPID, pid, awake, sleeps
	}

	execPID, pid, awake, awakeSleeps := run("gctrace=0")
	if execPID == 0 || execPID != pid || !awake {
		t.Errorf("re-executed child: exec from pid %d, then pid %d MonitorAwake %v; want one pid, awake", execPID, pid, awake)
	}
	execPID, _, awake, sleepySleeps := run("schedtrace=0")
	if execPID != 0 || awake {
		t.Errorf("child with schedtrace=0: exec from pid %d, MonitorAwake %v; want no exec, not awake", execPID, awake)
	}
	// Awake, the monitor sleeps 10 ms at a time: about 100 sleeps in the
	// idle second. In its deep sleep it waits for the one timer: a few.
	t.Logf("threads' sleeps in %v idle: %d awake, %d with schedtrace=0", monitorIdle, awakeSleeps, sleepySleeps)
	if awakeSleeps < 30 || sleepySleeps > 20 {
		t.Errorf("idle for %v, the child's threads slept %d times with the monitor kept awake and %d without; want at least 30 and at most 20",
			monitorIdle, awakeSleeps, sleepySleeps)
	}
}
