package agenttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/syncbuf"
)

// NonRootUID is the user and group an agent from StartProcess runs as by
// default: the Dockerfile's USER, with no entry in the passwd database,
// as in a distroless image.
const NonRootUID = 65532

// BuildUpgate builds ./cmd/upgate into a new temporary directory that
// any user may read, for an agent process that is not root, and returns
// the binary's path and a function that removes it. It is for a
// TestMain, which builds once for the package's tests.
func BuildUpgate() (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "upgate-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, err
	}
	bin = filepath.Join(dir, "upgate")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/upgate/upgate/cmd/upgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("go build ./cmd/upgate: %w\n%s", err, out)
	}
	return bin, remove, nil
}

// Runner is what a TestMain runs: *testing.M, and what WithUpgate returns.
type Runner interface{ Run() int }

// WithUpgate wraps a TestMain's m: its Run builds upgate (BuildUpgate),
// stores the binary's path in *bin, runs the tests and removes the
// binary. A build that fails fails the run (exit code 1). Pass it to
// goleak.VerifyTestMain.
func WithUpgate(m Runner, bin *string) Runner { return withUpgate{m, bin} }

type withUpgate struct {
	m   Runner
	bin *string
}

func (w withUpgate) Run() int {
	bin, remove, err := BuildUpgate()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	*w.bin = bin
	return w.m.Run()
}

// Process is "upgate agent" running in a process of its own as a user
// that is not root, as every deployment runs it: the kernel checks its
// permissions, so a file mode 0444 cannot be written and a directory
// mode 0555 cannot be changed, as for an OpenSSH or vsftpd login.
type Process struct {
	// Root is the directory the agent serves, owned by UID and GID, mode
	// 0755, in a directory of its own.
	Root string
	// Target is the gRPC target of its unix socket, for config.Agent's
	// Address.
	Target string
	// TokenFile holds the bearer token, for config.Agent's TokenFile.
	TokenFile string
	// UID and GID are the agent's user and group.
	UID, GID int

	log  *syncbuf.Buffer // the agent's output, written by exec's copier
	conn *grpc.ClientConn
}

// StartProcess runs bin (from BuildUpgate) as "upgate agent" under uid
// and gid on a unix socket, with a random token, and waits until it
// answers a Status call. The agent, its directory and everything in it
// go away in t.Cleanup; the agent's log is printed when the test failed.
//
// Only root can start a process as another user: without root the test
// skips, unless UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure.
func StartProcess(t testing.TB, bin string, uid, gid int) *Process {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatal("an agent process as another user needs root")
		}
		t.Skip("an agent process as another user needs root")
	}
	base, err := os.MkdirTemp("", "upgate-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Errorf("agent process: removing %s: %v", base, err)
		}
	})
	// base is 0700 and root's; the agent needs to pass through it.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(base, 0o755))
	p := &Process{Root: filepath.Join(base, "root"), TokenFile: filepath.Join(base, "token"), UID: uid, GID: gid, log: new(syncbuf.Buffer)}
	run := filepath.Join(base, "run") // the socket's directory, the agent's to write
	for _, d := range []string{p.Root, run} {
		must(os.Mkdir(d, 0o755))
		must(os.Chown(d, uid, gid))
	}
	token := newToken()
	must(os.WriteFile(p.TokenFile, []byte(token+"\n"), 0o600))
	must(os.Chown(p.TokenFile, uid, gid))
	sock := filepath.Join(run, "agent.sock")
	p.Target = "unix:" + sock

	cmd := exec.Command(bin, "agent", "--listen", p.Target, "--root", p.Root, "--token-file", p.TokenFile, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL, // never outlives the test binary
		Setpgid:    true,
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("agent process: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("agent process log:\n%s", p.log)
		}
	})

	conn, err := backend.Dial(p.Target, backend.DialOptions{Token: token})
	if err != nil {
		t.Fatalf("agent process: dial %s: %v", p.Target, err)
	}
	t.Cleanup(func() { conn.Close() })
	p.conn = conn
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := p.status()
		if err == nil {
			return p
		}
		select {
		case <-exited:
			t.Fatalf("agent process exited: %v\n%s", cmd.ProcessState, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent process: no answer on %s: %v\n%s", p.Target, err, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dir makes the directory name in Root (a user's mount root, say),
// owned by the agent's user, and returns its path.
func (p *Process) Dir(t testing.TB, name string) string {
	t.Helper()
	d := filepath.Join(p.Root, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, p.UID, p.GID); err != nil {
		t.Fatal(err)
	}
	return d
}

// WaitIdle waits until the agent holds no open file and no upload, for
// at most d, and fails the test if it still does.
func (p *Process) WaitIdle(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := p.status()
		if err == nil && st.GetOpenHandles() == 0 && st.GetUploadsInProgress() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent process still busy after %v: %v, %v", d, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// status asks the agent for its Status, for at most a second.
func (p *Process) status() (*agentpb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return agentpb.NewAgentClient(p.conn).Status(ctx, &agentpb.StatusRequest{})
}
