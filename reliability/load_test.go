package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/server"
)

// The load: the story's 1,000 connections, 200 of them uploading.
const (
	ftpUploaders  = 100
	sftpUploaders = 100
	ftpIdlers     = 400
	sshIdlers     = 400
	totalConns    = ftpUploaders + sftpUploaders + ftpIdlers + sshIdlers
	loadUsers     = 10
	pingEvery     = 10 * time.Second
	// dialParallel bounds the logins in flight while connecting.
	dialParallel = 50
)

// loadSources are the loopback addresses clients connect from: spreading
// them spreads the ephemeral ports the FTP data connections use.
var loadSources = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}

// errorLog counts the workers' errors and keeps the first few.
type errorLog struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorLog) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 20 {
		e.first = append(e.first, fmt.Sprintf(format, args...))
	}
}

// procStatus reads a "kB" field of a /proc/<pid>/status file, in bytes.
func procStatus(t testing.TB, file, field string) int64 {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in %s", field, file)
	return 0
}

// countFDs counts the entries of a /proc/<pid>/fd directory.
func countFDs(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := len(ents)
	if dir == "/proc/self/fd" {
		n-- // the directory being read
	}
	return n
}

// raiseFDLimit raises RLIMIT_NOFILE to 65536, or to the hard limit when
// that cannot be raised, and fails if that is too low for the load.
func raiseFDLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	want := syscall.Rlimit{Cur: 65536, Max: max(65536, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Logf("RLIMIT_NOFILE %d/%d", lim.Cur, lim.Max)
	if lim.Cur < 8192 {
		t.Fatalf("RLIMIT_NOFILE %d is too low for %d connections on both ends", lim.Cur, totalConns)
	}
}

func loadDuration(t *testing.T) time.Duration {
	if v := os.Getenv("UPGATE_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("UPGATE_LOAD_DURATION=%q: want a positive duration", v)
		}
		return d
	}
	return 60 * time.Second
}

// uploader is one uploading connection and what it uploaded.
type uploader struct {
	id     int
	user   string
	dir    string // its directory in the user's tree
	ftp    *ftp.ServerConn
	sftp   *sftpConn
	rng    *rand.Rand
	buf    []byte
	sums   map[string][32]byte // user path -> sha256
	bytes  int64
	closed bool
}

// next returns the content of the next file: 1 to 64 KiB of random bytes.
func (u *uploader) next() []byte {
	n := 1<<10 + u.rng.IntN(63<<10+1)
	b := u.buf[:n]
	for i := 0; i < n; i += 8 {
		v := u.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func (u *uploader) put(name string, data []byte) error {
	if u.ftp != nil {
		return u.ftp.Stor(name, bytes.NewReader(data))
	}
	f, err := u.sftp.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (u *uploader) close() {
	if u.closed {
		return
	}
	u.closed = true
	if u.ftp != nil {
		_ = u.ftp.Quit()
	} else {
		_ = u.sftp.Close()
	}
}

// TestLoad runs the story's 1,000 concurrent connections against one
// gateway with an embedded agent: 100 FTP and 100 SFTP connections upload
// small files without pause for UPGATE_LOAD_DURATION (60 s), 400 FTP
// connections send NOOP and 400 SSH connections keepalive@openssh.com
// every 10 s. No worker may see an error; every uploaded file must have
// the content its worker sent (sha256); once everything is closed the
// session registry is empty and the goroutines and file descriptors are
// back at their baselines. It logs the RSS per connection: by default the
// gateway runs in this process with the clients, so the figure is an
// upper bound for the gateway; UPGATE_LOAD_GATEWAY=process runs it as an
// `upgate serve` process and measures that alone (its registry through the
// admin API, its descriptors in /proc). See docs/benchmarks-load.md.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a one-minute load test")
	}
	duration := loadDuration(t)
	raiseFDLimit(t)

	// Baselines, before the gateway exists. Touch the network first so
	// that the runtime's poller descriptors are part of the baseline.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	runtime.GC()
	debug.FreeOSMemory()
	fdBase := countFDs(t, "/proc/self/fd")
	goroutinesBase := runtime.NumGoroutine()
	ignore := goleak.IgnoreCurrent()
	// The gateway's own baselines: this process's now, or the gateway
	// process's once it is up.
	rssBase := procStatus(t, "/proc/self/status", "VmRSS")
	gwFDBase := fdBase

	root := t.TempDir()
	g := startLoadGateway(t, root)
	if g.proc != nil {
		rssBase = procStatus(t, g.procDir+"/status", "VmRSS")
		gwFDBase = countFDs(t, g.procDir+"/fd")
	}
	// Reset VmHWM to the current RSS, so that it records this test's peak.
	hwmReset := os.WriteFile(g.procDir+"/clear_refs", []byte("5"), 0) == nil
	ftpAddr, sftpAddr := g.ftpAddr, g.sftpAddr

	// Peak RSS, sampled every second from here on.
	var rssPeak atomic.Int64
	samplerStop := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if r := procStatus(t, g.procDir+"/status", "VmRSS"); r > rssPeak.Load() {
				rssPeak.Store(r)
			}
			select {
			case <-samplerStop:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(samplerStop); <-samplerDone })
	t.Cleanup(stopSampler)

	// Connect all 1,000, a few dozen logins at a time.
	var errs errorLog
	uploaders := make([]*uploader, ftpUploaders+sftpUploaders)
	idleFTP := make([]*ftp.ServerConn, ftpIdlers)
	idleSSH := make([]*ssh.Client, sshIdlers)
	var closeOnce sync.Once
	closeAll := func() {
		closeOnce.Do(func() {
			var wg sync.WaitGroup
			sem := make(chan struct{}, dialParallel)
			run := func(fn func()) {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					fn()
				}()
			}
			for _, u := range uploaders {
				if u != nil {
					run(u.close)
				}
			}
			for _, c := range idleFTP {
				if c != nil {
					run(func() { _ = c.Quit() })
				}
			}
			for _, c := range idleSSH {
				if c != nil {
					run(func() { _ = c.Close() })
				}
			}
			wg.Wait()
		})
	}
	t.Cleanup(closeAll)

	connectStart := time.Now()
	{
		var wg sync.WaitGroup
		sem := make(chan struct{}, dialParallel)
		for i := range totalConns {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				user := fmt.Sprintf("load%02d", i%loadUsers)
				src := loadSources[i%len(loadSources)]
				switch {
				case i < ftpUploaders+sftpUploaders:
					u := &uploader{id: i, user: user, dir: fmt.Sprintf("w%04d", i),
						rng: rand.New(rand.NewPCG(uint64(i), 42)), buf: make([]byte, 64<<10), sums: make(map[string][32]byte)}
					var err error
					if i < ftpUploaders {
						u.ftp, err = dialFTP(ftpAddr, src, user, func(c *ftp.ServerConn) error { return c.MakeDir(u.dir) })
					} else {
						u.sftp, err = dialSFTP(sftpAddr, src, user, func(c *sftp.Client) error { return c.Mkdir(u.dir) })
					}
					if err != nil {
						errs.add("connect uploader %d: %v", i, err)
						return
					}
					uploaders[i] = u
				case i < ftpUploaders+sftpUploaders+ftpIdlers:
					c, err := dialFTP(ftpAddr, src, user, nil)
					if err != nil {
						errs.add("connect idle FTP %d: %v", i, err)
						return
					}
					idleFTP[i-ftpUploaders-sftpUploaders] = c
				default:
					// An IDE keeps its SFTP channel open.
					c, err := dialSSH(sftpAddr, src, user, func(c *ssh.Client) error {
						sess, err := c.NewSession()
						if err == nil {
							if err = sess.RequestSubsystem("sftp"); err != nil {
								sess.Close()
							}
						}
						return err
					})
					if err != nil {
						errs.add("connect idle SSH %d: %v", i, err)
						return
					}
					idleSSH[i-ftpUploaders-sftpUploaders-ftpIdlers] = c
				}
			}()
		}
		wg.Wait()
	}
	connectTime := time.Since(connectStart)
	if errs.n > 0 {
		t.Fatalf("%d connections failed; first: %s", errs.n, strings.Join(errs.first, "\n"))
	}
	if n := g.sessions(t); n < totalConns {
		t.Fatalf("registry holds %d sessions with %d clients connected", n, totalConns)
	}
	rssConnected := procStatus(t, g.procDir+"/status", "VmRSS")
	goroutinesConnected := runtime.NumGoroutine()
	t.Logf("%d connections up in %v; registry %d sessions; RSS %d MiB (baseline %d MiB); %d goroutines (baseline %d)",
		totalConns, connectTime.Round(time.Millisecond), g.sessions(t), rssConnected>>20, rssBase>>20, goroutinesConnected, goroutinesBase)

	// Run: uploaders without pause, idlers pinging every 10 s.
	deadline := time.Now().Add(duration)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pingsFTP, pingsSSH atomic.Int64
	for _, u := range uploaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; time.Now().Before(deadline); seq++ {
				name := path.Join(u.dir, fmt.Sprintf("f%06d.bin", seq))
				data := u.next()
				if err := u.put(name, data); err != nil {
					errs.add("uploader %d (%s) %s: %v", u.id, map[bool]string{true: "ftp", false: "sftp"}[u.ftp != nil], name, err)
					return
				}
				u.sums[name] = sha256.Sum256(data)
				u.bytes += int64(len(data))
			}
		}()
	}
	// pings counts each idle connection's pings; the last one may just
	// miss the deadline, so each must have done one less than the
	// duration allows.
	pings := make([]atomic.Int64, ftpIdlers+sshIdlers)
	minPings := max(int64(duration/pingEvery)-1, 1)
	pinger := func(i int, ping func() error, count *atomic.Int64) {
		defer wg.Done()
		// Stagger the pings over the interval.
		first := time.NewTimer(time.Duration(i%ftpIdlers) * pingEvery / time.Duration(ftpIdlers))
		defer first.Stop()
		select {
		case <-stop:
			return
		case <-first.C:
		}
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			if err := ping(); err != nil {
				errs.add("idle connection %d: %v", i, err)
				return
			}
			count.Add(1)
			pings[i].Add(1)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}
	for i, c := range idleFTP {
		wg.Add(1)
		go pinger(i, c.NoOp, &pingsFTP)
	}
	for i, c := range idleSSH {
		wg.Add(1)
		go pinger(ftpIdlers+i, func() error {
			_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
			return err
		}, &pingsSSH)
	}
	// Everything stops by itself at the deadline; a worker stuck past a
	// generous bound fails the test, and closing the clients frees it.
	time.Sleep(time.Until(deadline))
	close(stop)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		t.Errorf("workers still busy 2 min after the deadline: closing the clients")
		closeAll()
		select {
		case <-finished:
		case <-time.After(time.Minute):
			buf := make([]byte, 1<<20)
			t.Fatalf("workers stuck:\n%s", buf[:runtime.Stack(buf, true)])
		}
	}
	elapsed := duration + time.Since(deadline)
	stopSampler()
	rssHWM := procStatus(t, g.procDir+"/status", "VmHWM")
	peak := rssPeak.Load()
	if hwmReset && rssHWM > peak {
		peak = rssHWM
	}
	if n := g.sessions(t); n < totalConns {
		t.Errorf("only %d sessions left at the end of the run", n)
	}

	// Every file as its worker sent it.
	var files, ftpFiles, sftpFiles int
	var bytesUp int64
	for _, u := range uploaders {
		for name, sum := range u.sums {
			b, err := os.ReadFile(filepath.Join(root, u.user, filepath.FromSlash(name)))
			if err != nil {
				t.Errorf("uploader %d: %v", u.id, err)
				continue
			}
			if sha256.Sum256(b) != sum {
				t.Errorf("uploader %d: %s has the wrong content (%d bytes)", u.id, name, len(b))
			}
			files++
		}
		if u.ftp != nil {
			ftpFiles += len(u.sums)
		} else {
			sftpFiles += len(u.sums)
		}
		bytesUp += u.bytes
		if left := agenttest.TempFiles(t, filepath.Join(root, u.user, u.dir)); len(left) != 0 {
			t.Errorf("uploader %d: temp files left: %v", u.id, left)
		}
	}
	if errs.n > 0 {
		t.Errorf("%d errors during the run; first:\n%s", errs.n, strings.Join(errs.first, "\n"))
	}
	for i := range pings {
		if n := pings[i].Load(); n < minPings {
			t.Errorf("idle connection %d pinged %d times in %v, want at least %d", i, n, duration, minPings)
		}
	}

	// Close everything: the gateway forgets every session, then its
	// goroutines and descriptors go.
	closeAll()
	var left int
	if !waitUntil(30*time.Second, func() bool { left = g.sessions(t); return left == 0 }) {
		t.Errorf("registry still holds %d sessions 30 s after every client closed", left)
	}
	if g.srv != nil {
		if a, ok := g.srv.Gateway.AgentPool().Embedded("embedded"); ok && a.OpenHandles() != 0 {
			t.Errorf("agent holds %d open files after the run", a.OpenHandles())
		}
	} else {
		// The gateway process's descriptors, before it stops.
		var fds int
		if !waitUntil(30*time.Second, func() bool { fds = countFDs(t, g.procDir+"/fd"); return fds <= gwFDBase }) {
			t.Errorf("the gateway process's open file descriptors: %d, baseline %d", fds, gwFDBase)
		}
	}
	g.shutdown()
	var leak error
	waitUntil(30*time.Second, func() bool { leak = goleak.Find(ignore); return leak == nil })
	if leak != nil {
		t.Errorf("goroutines not back to baseline 30 s after shutdown: %v", leak)
	}
	var fds int
	if !waitUntil(30*time.Second, func() bool { fds = countFDs(t, "/proc/self/fd"); return fds <= fdBase }) {
		t.Errorf("open file descriptors: %d, baseline %d", fds, fdBase)
		if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
			for _, e := range ents {
				if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
					t.Logf("fd %s -> %s", e.Name(), l)
				}
			}
		}
	}

	who := "clients and gateway in one process"
	if g.proc != nil {
		who = "the gateway process alone"
	}
	perConn := float64(peak-rssBase) / totalConns / 1024
	idlePerConn := float64(rssConnected-rssBase) / totalConns / 1024
	t.Logf("run %v: %d files uploaded (%d FTP, %d SFTP), %.1f MiB, %.0f files/s; %d NOOP, %d SSH keepalives; 0 errors: %v",
		elapsed.Round(time.Millisecond), files, ftpFiles, sftpFiles, float64(bytesUp)/(1<<20), float64(files)/elapsed.Seconds(),
		pingsFTP.Load(), pingsSSH.Load(), errs.n == 0)
	t.Logf("RSS: baseline %.1f MiB, connected %.1f MiB, peak %.1f MiB (sampled %.1f MiB, VmHWM %.1f MiB, reset %v)",
		mib(rssBase), mib(rssConnected), mib(peak), mib(rssPeak.Load()), mib(rssHWM), hwmReset)
	t.Logf("RSS per connection (%s): peak %.1f KiB, connected and idle %.1f KiB; goroutines in this process per connection %.1f",
		who, perConn, idlePerConn, float64(goroutinesConnected-goroutinesBase)/totalConns)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// loadGateway is the gateway under load: in this process (the default) or,
// with UPGATE_LOAD_GATEWAY=process, an `upgate serve` process of its own,
// whose RSS is then the gateway's alone.
type loadGateway struct {
	ftpAddr, sftpAddr string
	srv               *server.Server // in-process
	proc              *proc          // a process
	admin             *admin.Client  // the process's admin API
	procDir           string         // /proc/self or /proc/<pid>
	shutdown          func()
}

func startLoadGateway(t *testing.T, root string) *loadGateway {
	hostKey := filepath.Join(t.TempDir(), "ssh_host_ed25519_key")
	h := passwordHash(t)
	users := make([]string, loadUsers)
	for i := range users {
		users[i] = fmt.Sprintf("load%02d", i)
	}
	mode := os.Getenv("UPGATE_LOAD_GATEWAY")
	if mode == "" && raceEnabled {
		// The race detector allows 8128 live goroutines; clients and
		// gateway together have about 14 per connection.
		t.Log("race detector on: the gateway runs as a process of its own")
		mode = "process"
	}
	switch mode {
	case "", "inprocess":
	case "process":
		var b strings.Builder
		b.WriteString("listen: {ftp: 127.0.0.1:0, sftp: 127.0.0.1:0, admin: 127.0.0.1:0}\n")
		b.WriteString("connections: {max: 8192, max_per_ip: 4096, max_per_user: 4096}\n")
		fmt.Fprintf(&b, "ftp: {passive_ports: \"\"}\nsftp: {host_keys: [%q]}\n", hostKey)
		fmt.Fprintf(&b, "agents:\n  embedded: {embedded: true, root: %q}\nusers:\n", root)
		for _, u := range users {
			fmt.Fprintf(&b, "  - {name: %s, password_hash: %q, mounts: [{path: /, agent: embedded, root: %s}]}\n", u, h, u)
		}
		b.WriteString("log: {level: info}\n")
		file := filepath.Join(t.TempDir(), "upgate.yaml")
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProc(t, "gateway", "serve", "--config", file)
		ftpAddr, sftpAddr, adminAddr := p.gatewayAddrs(t, true, true, true)
		g := &loadGateway{ftpAddr: ftpAddr, sftpAddr: sftpAddr, proc: p, procDir: fmt.Sprintf("/proc/%d", p.cmd.Process.Pid),
			admin: &admin.Client{Addr: adminAddr, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}}
		g.shutdown = sync.OnceFunc(func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					t.Errorf("the gateway exited with %v:\n%s", p.err, p.out.String())
				}
			case <-time.After(time.Minute):
				t.Errorf("the gateway did not exit within a minute of SIGTERM")
			}
		})
		t.Cleanup(g.shutdown)
		return g
	default:
		t.Fatalf("UPGATE_LOAD_GATEWAY=%q: want inprocess or process", mode)
	}
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = ""
	cfg.SFTP.HostKeys = []string{hostKey}
	cfg.Connections.Max = 8192
	cfg.Connections.MaxPerIP = 4096
	cfg.Connections.MaxPerUser = 4096
	cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: root}}
	for _, u := range users {
		cfg.Users = append(cfg.Users, config.User{Name: u, PasswordHash: h,
			Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: u}}})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	g := &loadGateway{ftpAddr: srv.FTPAddr.String(), sftpAddr: srv.SFTPAddr.String(), srv: srv, procDir: "/proc/self"}
	g.shutdown = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	t.Cleanup(g.shutdown)
	return g
}

// sessions is the number of sessions in the gateway's registry (data
// connections included).
func (g *loadGateway) sessions(t testing.TB) int {
	t.Helper()
	if g.srv != nil {
		return g.srv.Gateway.Registry().Len()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := g.admin.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(s)
}
