package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/netnstest"
)

// The cable test for SFTP: a pkg/sftp client inside a network namespace
// vanishes without a FIN or an RST (its packets are dropped, then it is
// killed). Directly connected, the gateway must reap its session through
// TCP keepalive and TCP_USER_TIMEOUT alone (SSH keepalive, idle and
// progress timeouts are an hour away), abort the upload it was receiving
// and release the agent's files. Behind a relay that keeps the gateway's
// TCP connection healthy, only SSH keepalive can notice, and must.

// reapBound is the generous bound on reaping by TCP. The timers below
// make it about 4 s; only a phantom connection crosses a minute.
const reapBound = 60 * time.Second

// sshReapBound is the generous bound on reaping by SSH keepalive: every
// 1 s, 3 missed, so about 4 s.
const sshReapBound = 30 * time.Second

// cableNetns names the namespaces and draws their subnets from
// 10.232.0.0/16, apart from the FTP cable test's, which may run at the
// same time in another process.
var cableNetns = netnstest.Prefix{Netns: "upgs-", HostIf: "ush", PeerIf: "usp", Octet: 232}

// uploadStall is how much the mid-upload client sends before it stalls.
const uploadStall = 4 << 20

// Environment of the helper client process (TestHelperSFTPClient).
const (
	helperMode = "UPGATE_SFTP_HELPER_MODE" // idle, upload or download
	helperAddr = "UPGATE_SFTP_HELPER_ADDR"
	helperUser = "UPGATE_SFTP_HELPER_USER"
	helperPass = "UPGATE_SFTP_HELPER_PASS"
	helperPath = "UPGATE_SFTP_HELPER_PATH"
)

// TestHelperSFTPClient is not a test: TestCableSFTP runs the test binary
// with it inside a network namespace as the SFTP client. It prints READY
// once it reached the state the case needs:
//   - idle: logged in, SFTP session open; it quits cleanly when its stdin
//     closes;
//   - upload: uploadStall bytes of an upload written, then the upload
//     stalls;
//   - download: the first 256 KiB of a download read, then 256 KiB every
//     100 ms;
//   - download-stalled: the first MiB of a download read, then the client
//     stops reading its socket with 64 reads outstanding.
func TestHelperSFTPClient(t *testing.T) {
	mode := os.Getenv(helperMode)
	if mode == "" {
		t.Skip("helper process for TestCableSFTP")
	}
	os.Exit(runHelperClient(mode))
}

func runHelperClient(mode string) int {
	conf := clientConfig(os.Getenv(helperUser), ssh.Password(os.Getenv(helperPass)))
	addr := os.Getenv(helperAddr)
	raw, err := dialHelper(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 2
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, addr, conf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssh:", err)
		return 2
	}
	conn := ssh.NewClient(sc, chans, reqs)
	c, err := sftp.NewClient(conn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sftp:", err)
		return 2
	}
	name := os.Getenv(helperPath)
	switch mode {
	case "idle":
		if _, err := c.Getwd(); err != nil {
			fmt.Fprintln(os.Stderr, "getwd:", err)
			return 3
		}
		fmt.Println("READY")
		_, _ = io.Copy(io.Discard, os.Stdin)
		c.Close()
		conn.Close()
		return 0
	case "upload":
		f, err := c.Create(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "create:", err)
			return 4
		}
		_, err = io.Copy(f, &netnstest.StallingReader{Left: uploadStall})
		fmt.Fprintln(os.Stderr, "upload ended:", err)
		return 4
	case "download-stalled":
		// The client stops reading its socket in the middle of a download
		// with requests outstanding, as a hung or sleeping laptop does:
		// its small receive buffer fills and the gateway's socket holds
		// unsent data behind a zero window.
		f, err := c.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return 5
		}
		w := &readyAfter{left: 1 << 20, ready: make(chan struct{})}
		go func() {
			_, err := io.Copy(w, f) // WriteTo: 64 reads in flight
			fmt.Fprintln(os.Stderr, "download ended:", err)
		}()
		<-w.ready
		stall.Store(true)
		fmt.Println("READY")
		netnstest.BlockForever()
	case "download":
		f, err := c.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			return 5
		}
		buf := make([]byte, 256<<10)
		for first := true; ; first = false {
			if _, err := io.ReadFull(f, buf); err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				return 5
			}
			if first {
				fmt.Println("READY")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	fmt.Fprintln(os.Stderr, "unknown mode", mode)
	return 1
}

// readyAfter discards what it is given and closes ready once left bytes
// have come.
type readyAfter struct {
	left  int
	ready chan struct{}
}

func (w *readyAfter) Write(p []byte) (int, error) {
	if w.left > 0 {
		if w.left -= len(p); w.left <= 0 {
			close(w.ready)
		}
	}
	return len(p), nil
}

// stall, once set, makes the helper's connection stop reading.
var stall atomic.Bool

// stallingConn is the helper's connection: a small receive buffer, and
// reads that block for good once stall is set.
type stallingConn struct{ net.Conn }

func (c stallingConn) Read(p []byte) (int, error) {
	if stall.Load() {
		netnstest.BlockForever()
	}
	return c.Conn.Read(p)
}

// dialHelper dials addr with a 64 KiB receive buffer, set before the
// connect so the window scale stays small.
func dialHelper(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return stallingConn{c}, nil
}

// startHelper runs the test binary as an SFTP client of addr inside n,
// logged in as alice, and waits for READY. It is killed in t.Cleanup.
func startHelper(t *testing.T, n *netnstest.Netns, addr, mode, name string) *netnstest.Helper {
	t.Helper()
	return n.StartHelper(t, "TestHelperSFTPClient", helperMode+"="+mode, helperAddr+"="+addr,
		helperUser+"=alice", helperPass+"="+gwtest.Users["alice"], helperPath+"="+name)
}

// closeLog records why and when each session closed.
type closeLog struct {
	mu     sync.Mutex
	closed map[string]closeRecord // by session ID
}

type closeRecord struct {
	reason string
	at     time.Time
}

func watchCloses(e *env) *closeLog {
	l := &closeLog{closed: make(map[string]closeRecord)}
	e.Srv.Gateway.Registry().OnClose(func(s *gateway.Session) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed[s.ID] = closeRecord{reason: s.CloseReason(), at: time.Now()}
	})
	return l
}

func (l *closeLog) get(id string) (closeRecord, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.closed[id]
	return r, ok
}

// tcpTimers are the short dead-peer timers of the direct cases.
var tcpTimers = gateway.SocketOptions{Keepalive: true, KeepaliveIdle: 2 * time.Second, KeepaliveInterval: time.Second, KeepaliveCount: 2, UserTimeout: 4 * time.Second}

// startCableGateway runs a gateway listening on n's veth pair with short
// TCP dead-peer timers and SSH keepalive, idle and progress timeouts an
// hour away, so only TCP keepalive and TCP_USER_TIMEOUT can reap a
// vanished client.
func startCableGateway(t *testing.T, n *netnstest.Netns) *env {
	t.Helper()
	return start(t, func(c *config.Config) {
		c.Listen.SFTP = net.JoinHostPort(n.HostIP.String(), "0")
		c.Connections.Keepalive = config.Keepalive{Idle: tcpTimers.KeepaliveIdle, Interval: tcpTimers.KeepaliveInterval, Count: tcpTimers.KeepaliveCount}
		c.Connections.UserTimeout = tcpTimers.UserTimeout
		c.Connections.IdleTimeout = time.Hour
		c.Connections.ProgressTimeout = time.Hour
		c.SFTP.Keepalive = config.SSHKeepalive{Interval: time.Hour, MaxMissed: 3}
	})
}

// startRelayGateway runs a gateway on loopback whose TCP timers are an
// hour long, with SSH keepalive every second, closing after 3 misses.
func startRelayGateway(t *testing.T) *env {
	t.Helper()
	return start(t, func(c *config.Config) {
		c.Connections.Keepalive = config.Keepalive{Idle: time.Hour, Interval: time.Hour, Count: 9}
		c.Connections.UserTimeout = time.Hour
		c.Connections.IdleTimeout = time.Hour
		c.Connections.ProgressTimeout = time.Hour
		c.SFTP.Keepalive = config.SSHKeepalive{Interval: time.Second, MaxMissed: 3}
	})
}

// fromPeer returns the gateway's sessions from the namespace's address.
func fromPeer(e *env, n *netnstest.Netns) []*gateway.Session {
	var out []*gateway.Session
	for _, s := range e.Srv.Gateway.Registry().Sessions() {
		if ap, err := netip.ParseAddrPort(s.Remote.String()); err == nil && ap.Addr().Unmap() == n.PeerIP {
			out = append(out, s)
		}
	}
	return out
}

// loggedIn waits until sessions() is exactly one session logged in as
// alice, and returns it.
func loggedIn(t *testing.T, sessions func() []*gateway.Session) *gateway.Session {
	t.Helper()
	var s *gateway.Session
	netnstest.WaitUntil(t, 15*time.Second, "no logged-in session from the client", func() bool {
		ss := sessions()
		if len(ss) == 1 && ss[0].User() == "alice" {
			s = ss[0]
			return true
		}
		return false
	})
	return s
}

// Which kernel timer a case means to exercise on the host's socket to the
// client after the cable pull.
const (
	anyTimer       = ""          // the relay cases: the gateway's socket is not the one to the client
	keepaliveTimer = "keepalive" // nothing unacknowledged: keepalive probes
	unackedTimer   = "unacked"   // data unacknowledged (retransmissions) or unsendable (zero-window probes): TCP_USER_TIMEOUT
)

// runsTimer reports whether an `ss -tnoH` line shows the timer a case
// expects.
func runsTimer(line, timer string) bool {
	if timer == unackedTimer {
		return strings.Contains(line, "timer:(on,") || strings.Contains(line, "timer:(persist,")
	}
	return strings.Contains(line, "timer:("+timer+",")
}

// sendQ returns the Send-Q column of an `ss -tnoH` line.
func sendQ(line string) string {
	if f := strings.Fields(line); len(f) > 1 {
		return f[1]
	}
	return ""
}

// vanish pulls the cable, kills the client (its FIN and RST go nowhere),
// checks the gateway did not notice at once, and waits until sess has left
// the registry (within bound), the host has no ESTABLISHED connection to
// the peer, and the agent holds no file. It returns how long reaping took
// from the cable pull.
//
// timer says which kernel timer the case exercises. keepaliveTimer pulls
// the cable once nothing is unacknowledged (keepalive probes only such a
// socket), unackedTimer once data waits in the send queue (only
// TCP_USER_TIMEOUT bounds that one); either is checked on the socket after
// the pull.
func vanish(t *testing.T, e *env, n *netnstest.Netns, h *netnstest.Helper, sess *gateway.Session, bound time.Duration, timer string) time.Duration {
	t.Helper()
	reg := e.Srv.Gateway.Registry()
	var before []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		before = n.Established(t)
		busy := 0
		for _, l := range before {
			if sendQ(l) != "0" {
				busy++
			}
		}
		if len(before) > 0 && (timer == anyTimer || (busy > 0) == (timer == unackedTimer)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections to the client not in the state for the %q timer after 10s: %q", timer, before)
		}
	}
	t.Logf("before the cable pull, ss -tnoH state established dst %s:\n  %s", n.PeerIP, strings.Join(before, "\n  "))
	method := n.PullCable(t)
	pulled := time.Now()
	h.Kill(t)
	killed := time.Since(pulled)

	// No timer can fire within 1.5 s of the pull: a session gone this early
	// means the client's FIN or RST got through.
	time.Sleep(300 * time.Millisecond)
	if since := time.Since(pulled); since < 1500*time.Millisecond {
		if _, ok := reg.Get(sess.ID); !ok {
			t.Fatalf("session gone %v after the cable pull (%s) and the kill: the client's FIN/RST reached the gateway", since, method)
		}
	}
	logged := false
	for {
		if _, ok := reg.Get(sess.ID); !ok {
			break
		}
		if !logged && time.Since(pulled) > 1500*time.Millisecond {
			// Which timer the kernel runs now: keepalive, or retransmission
			// ("on") for data in flight.
			now := n.Established(t)
			t.Logf("1.5 s after the pull: %q", now)
			if timer != anyTimer && (len(now) != 1 || !runsTimer(now[0], timer)) {
				t.Errorf("1.5 s after the pull the socket does not run the %q timer: %q", timer, now)
			}
			logged = true
		}
		if time.Since(pulled) > bound {
			t.Fatalf("%v after the cable pull (%s), the vanished client's session is still in the registry: %+v\nss:\n  %s",
				bound, method, sess.Info(), strings.Join(n.Established(t), "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	reaped := time.Since(pulled)
	netnstest.WaitUntil(t, 10*time.Second, "the host still has ESTABLISHED connections to the vanished client", func() bool {
		return len(n.Established(t)) == 0
	})
	e.AgentIdle(t)
	t.Logf("cable pulled (%s), client killed %v later; session reaped %v after the pull (reason %q)",
		method, killed.Round(time.Millisecond), reaped.Round(time.Millisecond), sess.CloseReason())
	return reaped
}

// checkTimers fails unless sess's socket carries want.
func checkTimers(t *testing.T, sess *gateway.Session, want gateway.SocketOptions) {
	t.Helper()
	if got, err := sess.SocketOptions(); err != nil || got != want {
		t.Errorf("session %s: socket options %v (err %v), want %v", sess.ID, got, err, want)
	}
}

// relay is a TCP relay in the test's namespace, as a load balancer or an
// SSH jump host is: it accepts on one address, dials the target for each
// connection and copies both ways; when either side ends it closes both.
// Its client side never probes (keepalive off), so a client that vanishes
// behind it leaves the gateway's TCP connection healthy.
type relay struct {
	lis net.Listener
	wg  sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startRelay(t *testing.T, listen, target string) *relay {
	t.Helper()
	lc := net.ListenConfig{KeepAlive: -1}
	lis, err := lc.Listen(context.Background(), "tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{lis: lis, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.serve(c, target)
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *relay) track(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns[c] = struct{}{}
}

func (r *relay) serve(client net.Conn, target string) {
	d := net.Dialer{Timeout: 10 * time.Second}
	upstream, err := d.Dial("tcp", target)
	if err != nil {
		client.Close()
		return
	}
	r.track(client)
	r.track(upstream)
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
			r.mu.Lock()
			delete(r.conns, client)
			delete(r.conns, upstream)
			r.mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(upstream, client)
		closeBoth()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, upstream)
		closeBoth()
	}()
	wg.Wait()
}

func (r *relay) addr() string { return r.lis.Addr().String() }

func TestCableSFTP(t *testing.T) {
	netnstest.Require(t)
	gwtest.RequireTool(t, "ss")

	// Control: the link stays up and the client quits; the session ends at
	// once, which proves the namespace, the helper and the polling work.
	t.Run("control", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		closes := watchCloses(e)
		h := startHelper(t, n, e.Addr, "idle", "")
		sess := loggedIn(t, func() []*gateway.Session { return fromPeer(e, n) })
		checkTimers(t, sess, tcpTimers)
		h.Stdin.Close()
		quit := time.Now()
		took := netnstest.WaitUntil(t, reapBound, "the session is still registered after the client quit", func() bool {
			_, ok := closes.get(sess.ID)
			return ok
		})
		select {
		case <-h.Done:
			if h.Err != nil {
				t.Fatalf("helper client: %v\n%s", h.Err, h.Out)
			}
		case <-time.After(reapBound):
			t.Fatalf("helper client did not exit:\n%s", h.Out)
		}
		netnstest.WaitUntil(t, 10*time.Second, "ESTABLISHED connections left after the client quit", func() bool {
			return len(n.Established(t)) == 0
		})
		e.AgentIdle(t)
		rec, _ := closes.get(sess.ID)
		t.Logf("control: the session closed %v after the client quit (reason %q)", rec.at.Sub(quit).Round(time.Millisecond), rec.reason)
		if took > 10*time.Second {
			t.Errorf("a clean quit took %v to close the session", took)
		}
	})

	// An idle logged-in client vanishes: TCP keepalive reaps it.
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		h := startHelper(t, n, e.Addr, "idle", "")
		sess := loggedIn(t, func() []*gateway.Session { return fromPeer(e, n) })
		checkTimers(t, sess, tcpTimers)
		reaped := vanish(t, e, n, h, sess, reapBound, keepaliveTimer)
		t.Logf("idle: reaped in %v", reaped.Round(time.Millisecond))
	})

	// A client vanishes in the middle of an upload that replaces a file:
	// the upload is discarded, the file keeps its old content and mtime,
	// no temp file stays.
	t.Run("mid-upload", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		dir := e.UserDir("alice")
		mustWrite(t, filepath.Join(dir, "upload.bin"), []byte("<?php echo 'old content';\n"))
		old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
		if err := os.Chtimes(filepath.Join(dir, "upload.bin"), old, old); err != nil {
			t.Fatal(err)
		}
		want := netnstest.DirState(t, dir)
		h := startHelper(t, n, e.Addr, "upload", "/upload.bin")
		sess := loggedIn(t, func() []*gateway.Session { return fromPeer(e, n) })
		checkTimers(t, sess, tcpTimers)
		netnstest.WaitUntil(t, 30*time.Second, "the upload is not in progress in the gateway and the agent", func() bool {
			in := sess.Info()
			return in.Transfers > 0 && in.BytesIn >= uploadStall && len(agenttest.TempFilesUnder(t, dir)) == 1
		})
		reaped := vanish(t, e, n, h, sess, reapBound, keepaliveTimer)
		if tmp := agenttest.TempFilesUnder(t, dir); len(tmp) != 0 {
			t.Errorf("temp files left: %v", tmp)
		}
		netnstest.SameState(t, "after the vanished upload", netnstest.DirState(t, dir), want)
		t.Logf("mid-upload: reaped in %v", reaped.Round(time.Millisecond))
	})

	// A client vanishes in the middle of a download it reads slowly.
	t.Run("mid-download", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		dir := e.UserDir("alice")
		mustWrite(t, filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("0123456789abcdef"), 50<<20/16))
		want := netnstest.DirState(t, dir)
		h := startHelper(t, n, e.Addr, "download", "/big.bin")
		sess := loggedIn(t, func() []*gateway.Session { return fromPeer(e, n) })
		checkTimers(t, sess, tcpTimers)
		netnstest.WaitUntil(t, 30*time.Second, "the download is not in progress", func() bool {
			in := sess.Info()
			return in.Transfers > 0 && in.BytesOut >= 1<<20
		})
		reaped := vanish(t, e, n, h, sess, reapBound, anyTimer)
		netnstest.SameState(t, "after the vanished download", netnstest.DirState(t, dir), want)
		t.Logf("mid-download: reaped in %v", reaped.Round(time.Millisecond))
	})

	// A client stops reading in the middle of a download and then
	// vanishes: the gateway's socket holds unacknowledged data behind a
	// zero window, which keepalive never probes; only TCP_USER_TIMEOUT
	// bounds it.
	t.Run("mid-download-stalled", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		dir := e.UserDir("alice")
		mustWrite(t, filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("0123456789abcdef"), 50<<20/16))
		want := netnstest.DirState(t, dir)
		h := startHelper(t, n, e.Addr, "download-stalled", "/big.bin")
		sess := loggedIn(t, func() []*gateway.Session { return fromPeer(e, n) })
		checkTimers(t, sess, tcpTimers)
		reaped := vanish(t, e, n, h, sess, reapBound, unackedTimer)
		netnstest.SameState(t, "after the vanished download", netnstest.DirState(t, dir), want)
		t.Logf("mid-download-stalled: reaped in %v", reaped.Round(time.Millisecond))
	})

	// Behind a relay: the relay's client side goes quiet when the client
	// quits (link up); the relay closes the gateway side and the session
	// ends at once. Proves the relay before the next case relies on it.
	t.Run("relay-control", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startRelayGateway(t)
		closes := watchCloses(e)
		r := startRelay(t, net.JoinHostPort(n.HostIP.String(), "0"), e.Addr)
		h := startHelper(t, n, r.addr(), "idle", "")
		sess := loggedIn(t, e.Srv.Gateway.Registry().Sessions)
		h.Stdin.Close()
		quit := time.Now()
		netnstest.WaitUntil(t, reapBound, "the session is still registered after the client quit", func() bool {
			_, ok := closes.get(sess.ID)
			return ok
		})
		rec, _ := closes.get(sess.ID)
		if rec.reason == gateway.ReasonSSHKeepalive {
			t.Errorf("a clean quit was reaped by SSH keepalive")
		}
		netnstest.WaitUntil(t, 10*time.Second, "ESTABLISHED connections left after the client quit", func() bool {
			return len(n.Established(t)) == 0
		})
		t.Logf("relay-control: the session closed %v after the client quit (reason %q)", rec.at.Sub(quit).Round(time.Millisecond), rec.reason)
	})

	// The client vanishes behind a relay that stays up: the gateway's TCP
	// connection (to the relay) stays healthy and its TCP timers are an
	// hour long, so only SSH keepalive can reap the session.
	t.Run("relay-vanishes", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startRelayGateway(t)
		closes := watchCloses(e)
		r := startRelay(t, net.JoinHostPort(n.HostIP.String(), "0"), e.Addr)
		h := startHelper(t, n, r.addr(), "idle", "")
		sess := loggedIn(t, e.Srv.Gateway.Registry().Sessions)
		// Keepalives flow and are answered: the session outlives several
		// intervals while the client is there.
		time.Sleep(4500 * time.Millisecond)
		if _, ok := closes.get(sess.ID); ok {
			t.Fatalf("session closed while the client was alive: %q", sess.CloseReason())
		}
		reaped := vanish(t, e, n, h, sess, sshReapBound, anyTimer)
		rec, ok := closes.get(sess.ID)
		if !ok || rec.reason != gateway.ReasonSSHKeepalive {
			t.Errorf("close reason %q, want %q", rec.reason, gateway.ReasonSSHKeepalive)
		}
		t.Logf("relay-vanishes: reaped by SSH keepalive in %v (interval 1s, max_missed 3)", reaped.Round(time.Millisecond))
	})
}
