package reliability_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/server"
)

// password is every test user's password.
const password = "pw"

var (
	// binDir holds the upgate binary, built once on first use.
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "upgate-reliability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Every test ends its goroutines; TestLoad checks its own, this
		// catches the rest.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// upgateBinary builds ./cmd/upgate once per test run and returns its path.
func upgateBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "upgate")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/upgate/upgate/cmd/upgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// quietLog discards, unless UPGATE_TEST_LOG is set.
func quietLog() *slog.Logger {
	if os.Getenv("UPGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func passwordHash(t testing.TB) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// syncBuffer collects a child process's output: its first MiB.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

const maxOutput = 1 << 20

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if room := maxOutput - s.b.Len(); room > 0 {
		s.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a child process: an `upgate agent` or `upgate serve`.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// startProc runs the upgate binary with args. It is killed in t.Cleanup
// if still running.
func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(upgateBinary(t), args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() || os.Getenv("UPGATE_TEST_LOG") != "" {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
	return p
}

// logged waits until the process logs a line matching re, which must have
// one group, and returns that group: the address a listener got, say.
// Listening on port 0 and reading the address from the log avoids racing
// other processes for a port picked in advance.
func (p *proc) logged(t testing.TB, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.out.String()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within 30 s:\n%s", p.name, re, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatewayAddrs returns the FTP, SFTP and admin addresses an `upgate serve`
// process logged; those off are not waited for.
func (p *proc) gatewayAddrs(t testing.TB, ftp, sftp, admin bool) (ftpAddr, sftpAddr, adminAddr string) {
	t.Helper()
	if ftp {
		ftpAddr = p.logged(t, `msg="serving FTP".* addr=(\S+)`)
	}
	if sftp {
		sftpAddr = p.logged(t, `msg="serving SFTP".* addr=(\S+)`)
	}
	if admin {
		adminAddr = p.logged(t, `msg="serving admin HTTP".* addr=(\S+)`)
	}
	return ftpAddr, sftpAddr, adminAddr
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s (pid %d) did not die after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// agentProc is a real `upgate agent` process.
type agentProc struct {
	*proc
	Dir, Addr, TokenFile, Token string
}

// startAgent runs `upgate agent` serving dir on a loopback port with a
// fresh token file.
func startAgent(t testing.TB, dir string) *agentProc {
	t.Helper()
	tok := randomToken()
	tf := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(tf, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return restartAgent(t, &agentProc{Dir: dir, Addr: "127.0.0.1:0", TokenFile: tf, Token: tok})
}

// restartAgent runs a new agent process with a's directory, address and
// token.
func restartAgent(t testing.TB, a *agentProc) *agentProc {
	t.Helper()
	p := startProc(t, "agent", "agent", "--listen", a.Addr, "--root", a.Dir, "--token-file", a.TokenFile, "--log-level", "debug")
	addr := p.logged(t, `msg="agent serving" listen=(\S+)`)
	return &agentProc{proc: p, Dir: a.Dir, Addr: addr, TokenFile: a.TokenFile, Token: a.Token}
}

// agentClient is a gRPC client of an agent for its Status call, as an
// operator's probe would be.
func agentClient(t testing.TB, a *agentProc) agentpb.AgentClient {
	t.Helper()
	cc, err := backend.Dial(a.Addr, backend.DialOptions{Token: a.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return agentpb.NewAgentClient(cc)
}

func agentStatus(c agentpb.AgentClient) (*agentpb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Status(ctx, &agentpb.StatusRequest{}, grpc.WaitForReady(true))
}

// gwUser is a user of a test gateway: all of its tree is root inside
// agent.
type gwUser struct{ name, agent, root string }

// startGateway runs a gateway in-process with FTP and SFTP on loopback and
// the given agents and users (password "pw"). edit, if non-nil, adjusts the
// config before validation.
func startGateway(t testing.TB, agents map[string]config.Agent, users []gwUser, edit func(*config.Config)) *server.Server {
	t.Helper()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
	cfg.Agents = agents
	h := passwordHash(t)
	for _, u := range users {
		cfg.Users = append(cfg.Users, config.User{Name: u.name, PasswordHash: h,
			Mounts: []config.Mount{{Path: "/", Agent: u.agent, Root: u.root}}})
	}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx) // transfers cut by a fault may make it report errors
	})
	return srv
}

// setupTimeout bounds a client's connection, login and setup.
const setupTimeout = 30 * time.Second

// dialFTP logs user in over FTP from the loopback source address src
// ("" for the default) and runs setup, if non-nil, all within
// setupTimeout.
func dialFTP(addr, src, user string, setup func(*ftp.ServerConn) error) (*ftp.ServerConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	// The first connection dialled is the control connection: it gets a
	// deadline until the setup is done. Data connections get none.
	var ctrl net.Conn
	dial := func(network, address string) (net.Conn, error) {
		nc, err := d.Dial(network, address)
		if err == nil && ctrl == nil {
			ctrl = nc
			_ = nc.SetDeadline(time.Now().Add(setupTimeout))
		}
		return nc, err
	}
	c, err := ftp.Dial(addr, ftp.DialWithDialFunc(dial), ftp.DialWithShutTimeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	if err = c.Login(user, password); err == nil && setup != nil {
		err = setup(c)
	}
	if err != nil {
		c.Quit()
		return nil, err
	}
	_ = ctrl.SetDeadline(time.Time{})
	return c, nil
}

func mustFTP(t testing.TB, addr, user string) *ftp.ServerConn {
	t.Helper()
	c, err := dialFTP(addr, "", user, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	return c
}

// dialSSH opens an SSH connection as user from src ("" for the default)
// and runs setup, if non-nil, all within setupTimeout.
func dialSSH(addr, src, user string, setup func(*ssh.Client) error) (*ssh.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conf := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	_ = nc.SetDeadline(time.Now().Add(setupTimeout))
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, conf)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := ssh.NewClient(cc, chans, reqs)
	if setup != nil {
		if err := setup(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// sftpConn is an SFTP client and its SSH connection.
type sftpConn struct {
	*sftp.Client
	ssh *ssh.Client
}

func (c *sftpConn) Close() error {
	err := c.Client.Close()
	return errors.Join(err, c.ssh.Close())
}

// dialSFTP opens an SFTP session as user from src and runs setup, if
// non-nil, all within setupTimeout.
func dialSFTP(addr, src, user string, setup func(*sftp.Client) error) (*sftpConn, error) {
	var c *sftp.Client
	sc, err := dialSSH(addr, src, user, func(sc *ssh.Client) error {
		var err error
		if c, err = sftp.NewClient(sc); err == nil && setup != nil {
			if err = setup(c); err != nil {
				c.Close()
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &sftpConn{Client: c, ssh: sc}, nil
}

func mustSFTP(t testing.TB, addr, user string) *sftpConn {
	t.Helper()
	c, err := dialSFTP(addr, "", user, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ftpCode is the reply code in an error from jlaffaye/ftp, 0 if none.
func ftpCode(err error) (int, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, te.Msg
	}
	return 0, ""
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// waitUntil polls cond every 20 ms for at most d and reports whether it
// became true.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// pattern is n bytes of a repeating, position-dependent pattern seeded by
// tag, so two versions of a file differ everywhere.
func pattern(tag string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = tag[i%len(tag)] ^ byte(i>>8)
	}
	return b
}

func itoa(i int) string { return strconv.Itoa(i) }
