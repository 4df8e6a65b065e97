package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/goleak"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
)

func TestSocketOptionsOnAcceptedSockets(t *testing.T) {
	gw, _ := newAcceptGateway(t, func(c *config.Connections) {
		c.Keepalive = config.Keepalive{Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 4}
		c.UserTimeout = 19 * time.Second
	})
	want := gateway.SocketOptions{Keepalive: true, KeepaliveIdle: 7 * time.Second, KeepaliveInterval: 3 * time.Second, KeepaliveCount: 4, UserTimeout: 19 * time.Second}
	srv := serveLine(t, gw)
	cl := greeted(t, srv.addr())
	ctl := sessionOf(t, gw, cl)
	if got, err := ctl.SocketOptions(); err != nil || got != want {
		t.Fatalf("control connection's socket options: %v, %v; want %v", got, err, want)
	}

	// A data connection gets the same options and hangs under the control
	// session.
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if got := cl.cmd("LOGIN alice alice-pw"); got != "230 ok" {
		t.Fatalf("LOGIN: %q", got)
	}
	dl := gw.NewDataListener(testProto(), raw, ctl, gateway.DataOptions{})
	t.Cleanup(func() { dl.Close() })
	dc, err := net.Dial("tcp", dl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	acc, err := dl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.Close() })
	gc, ok := acc.(*gateway.Conn)
	if !ok {
		t.Fatalf("data listener returned a %T, want *gateway.Conn", acc)
	}
	data := gc.Session()
	if data.Parent != ctl {
		t.Fatalf("data session's parent is %v, want the control session %s", data.Parent, ctl.ID)
	}
	if data.Protocol != "test" || data.Remote.String() != dc.LocalAddr().String() {
		t.Errorf("data session %s %v, want test %v", data.Protocol, data.Remote, dc.LocalAddr())
	}
	if got, err := data.SocketOptions(); err != nil || got != want {
		t.Fatalf("data connection's socket options: %v, %v; want %v", got, err, want)
	}
	if info := data.Info(); info.Parent != ctl.ID || info.Socket == nil || *info.Socket != want {
		t.Errorf("data session info %+v", info)
	}

	// ss(8) sees the keepalive timer on both server sockets.
	if _, err := exec.LookPath("ss"); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("ss not found and UPGATE_REQUIRE_INTEROP=1: %v", err)
		}
		t.Logf("ss not found, not checked: %v", err)
		return
	}
	for _, addr := range []string{srv.addr(), dl.Addr().String()} {
		_, port, _ := net.SplitHostPort(addr)
		// A socket whose last reply (LOGIN's) the client has not yet
		// acknowledged (delayed ACK) shows its retransmission timer
		// instead: look again for a while.
		var out []byte
		for range 50 {
			out, err = exec.Command("ss", "-tnoeiH", "state", "established", "( sport = :"+port+" )").CombinedOutput()
			if err != nil {
				t.Fatalf("ss: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "keepalive") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(string(out), "keepalive") {
			t.Errorf("ss shows no keepalive timer on the socket accepted on %s:\n%s", addr, out)
		}
	}
}

// countFDs counts the process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// rawClient is a line-protocol client usable off the test goroutine.
type rawClient struct {
	c net.Conn
	r *bufio.Reader
}

func (c *rawClient) roundTrip(cmd, want string) error {
	_ = c.c.SetDeadline(time.Now().Add(hang))
	if cmd != "" {
		if _, err := io.WriteString(c.c, cmd+"\r\n"); err != nil {
			return err
		}
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%q: %w", cmd, err)
	}
	if got := strings.TrimRight(line, "\r\n"); got != want {
		return fmt.Errorf("%q: reply %q, want %q", cmd, got, want)
	}
	return nil
}

// inBatches runs fn(i) for i in [0, n), batch at a time, and returns the
// errors.
func inBatches(n, batch int, fn func(i int) error) error {
	var errs []error
	for b := 0; b < n; b += batch {
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for i := b; i < min(b+batch, n); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

func TestFiveHundredConnectionsLeaveNoTrace(t *testing.T) {
	gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.MaxPerIP = 1000 })
	srv := serveLine(t, gw)
	// Bring the embedded agent's gRPC server fully up (its accept loop
	// starts on a goroutine of its own) before taking the baseline; and
	// its connection: a login's session runs in process, and the first
	// call over gRPC is the health loop's, on a schedule of its own (a
	// CI run once took the baseline before it, and the connection's
	// server goroutines showed as leaked).
	if _, err := gw.LoginPassword(context.Background(), nil, "alice", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the agents' first health call", func() bool {
		for _, s := range gw.Agents() {
			if !s.Up {
				return false
			}
		}
		return true
	})
	ignore := goleak.IgnoreCurrent()
	baseFDs := countFDs(t)

	const n = 500
	clients := make([]*rawClient, n)
	t.Cleanup(func() {
		for _, c := range clients {
			if c != nil {
				c.c.Close()
			}
		}
	})
	err := inBatches(n, 50, func(i int) error {
		c, err := net.DialTimeout("tcp", srv.addr(), hang)
		if err != nil {
			return err
		}
		clients[i] = &rawClient{c: c, r: bufio.NewReader(c)}
		if err := clients[i].roundTrip("", "220 hello"); err != nil {
			return err
		}
		return clients[i].roundTrip("PING", "200 PONG")
	})
	if err != nil {
		t.Fatal(err)
	}

	if got := gw.Registry().Len(); got != n {
		t.Fatalf("registry holds %d sessions with %d connections open", got, n)
	}
	clientAddrs := make(map[string]bool, n)
	for _, c := range clients {
		clientAddrs[c.c.LocalAddr().String()] = true
	}
	ids, remotes := make(map[string]bool), make(map[string]bool)
	for _, s := range gw.Registry().Sessions() {
		if ids[s.ID] || remotes[s.Remote.String()] {
			t.Fatalf("session %s (%v) is not distinct", s.ID, s.Remote)
		}
		ids[s.ID], remotes[s.Remote.String()] = true, true
		if s.Protocol != "test" || !clientAddrs[s.Remote.String()] {
			t.Fatalf("session %s: protocol %q remote %v", s.ID, s.Protocol, s.Remote)
		}
	}
	if len(ids) != n {
		t.Fatalf("Sessions() returned %d sessions", len(ids))
	}

	err = inBatches(n, 50, func(i int) error {
		c := clients[i]
		if err := c.roundTrip("QUIT", "221 bye"); err != nil {
			return err
		}
		if _, err := c.r.ReadString('\n'); !isClosed(err) {
			return fmt.Errorf("after QUIT: %v, want EOF", err)
		}
		return c.c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, hang, "the registry to empty", func() bool { return gw.Registry().Len() == 0 })
	var fds int
	deadline := time.Now().Add(10 * time.Second)
	for fds = countFDs(t); fds > baseFDs && time.Now().Before(deadline); fds = countFDs(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if fds > baseFDs {
		t.Fatalf("%d file descriptors open after closing every connection, %d before", fds, baseFDs)
	}
	goleak.VerifyNone(t, ignore)
}

func TestLimits(t *testing.T) {
	t.Run("max", func(t *testing.T) {
		gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.Max = 5 })
		srv := serveLine(t, gw)
		var served []*client
		for range 5 {
			served = append(served, greeted(t, srv.addr()))
		}
		sixth := dialLine(t, srv.addr())
		lines := sixth.expectClosed(hang)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") || !strings.Contains(lines[0], "too many connections") {
			t.Fatalf("the 6th connection read %q, want one 421 too many connections", lines)
		}
		for _, cl := range served {
			cl.ping()
		}
		if got := gw.Registry().Len(); got != 5 {
			t.Fatalf("registry holds %d sessions, want 5", got)
		}
		// Room again once one leaves.
		served[0].quit()
		waitFor(t, hang, "the session to leave", func() bool { return gw.Registry().Len() == 4 })
		greeted(t, srv.addr()).ping()
	})

	t.Run("per ip", func(t *testing.T) {
		gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.MaxPerIP = 2 })
		srv := serveLine(t, gw)
		a, b := greeted(t, srv.addr()), greeted(t, srv.addr())
		third := dialLine(t, srv.addr())
		lines := third.expectClosed(hang)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") || !strings.Contains(lines[0], "too many connections") {
			t.Fatalf("the 3rd connection from 127.0.0.1 read %q, want one 421 too many connections", lines)
		}
		other := dialLineFrom(t, "127.0.0.2", srv.addr())
		other.expect("220 hello")
		other.ping()
		if s := sessionOf(t, gw, other); !strings.HasPrefix(s.Remote.String(), "127.0.0.2:") {
			t.Fatalf("session remote %v", s.Remote)
		}
		a.ping()
		b.ping()
	})

	t.Run("per user", func(t *testing.T) {
		gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.MaxPerUser = 2 })
		srv := serveLine(t, gw)
		a, b, c, d := greeted(t, srv.addr()), greeted(t, srv.addr()), greeted(t, srv.addr()), greeted(t, srv.addr())
		for _, cl := range []*client{a, b} {
			if got := cl.cmd("LOGIN alice alice-pw"); got != "230 ok" {
				t.Fatalf("LOGIN: %q", got)
			}
		}
		if got := c.cmd("LOGIN alice alice-pw"); !strings.HasPrefix(got, "530 ") || !strings.Contains(got, "too many connections") {
			t.Fatalf("third LOGIN of alice: %q, want 530 too many connections", got)
		}
		if u := sessionOf(t, gw, c).User(); u != "" {
			t.Fatalf("refused login left user %q on the session", u)
		}
		if got := d.cmd("LOGIN bob bob-pw"); got != "230 ok" {
			t.Fatalf("bob's LOGIN: %q", got)
		}
		c.ping() // a refused login does not end the connection
		a.quit()
		waitFor(t, hang, "alice's session to leave", func() bool { return gw.Registry().Len() == 3 })
		if got := c.cmd("LOGIN alice alice-pw"); got != "230 ok" {
			t.Fatalf("alice's LOGIN after one of hers closed: %q", got)
		}
		if got := sessionOf(t, gw, c).User(); got != "alice" {
			t.Fatalf("session user %q", got)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.IdleTimeout = 500 * time.Millisecond })
	closes := watchCloses(gw)
	srv := serveLine(t, gw)

	silent := greeted(t, srv.addr())
	silentID := sessionOf(t, gw, silent).ID
	pinger := greeted(t, srv.addr())
	pingerID := sessionOf(t, gw, pinger).ID
	// Every request is activity: a client that keeps pinging keeps its
	// session well past the idle timeout.
	for range 15 {
		time.Sleep(100 * time.Millisecond)
		pinger.ping()
	}
	if r, closed := closes.reason(pingerID); closed {
		t.Fatalf("a client pinging every 100ms was closed: %s", r)
	}
	if lines := silent.expectClosed(hang); len(lines) != 0 {
		t.Fatalf("the silent client read %q", lines)
	}
	if r := closes.waitReason(t, silentID); r != gateway.ReasonIdle {
		t.Fatalf("silent client closed for %q, want %q", r, gateway.ReasonIdle)
	}
	pinger.quit()

	// A transfer in progress is never idle.
	holder := greeted(t, srv.addr())
	holderID := sessionOf(t, gw, holder).ID
	if got := holder.cmd("LOGIN alice alice-pw"); got != "230 ok" {
		t.Fatalf("LOGIN: %q", got)
	}
	if got := holder.cmd("HOLD"); got != "150 holding" {
		t.Fatalf("HOLD: %q", got)
	}
	time.Sleep(1500 * time.Millisecond)
	if r, closed := closes.reason(holderID); closed {
		t.Fatalf("a client with an upload open was closed after 1.5s of silence: %s", r)
	}
	if got := holder.cmd("DONE"); got != "226 done" {
		t.Fatalf("DONE: %q", got)
	}
	if lines := holder.expectClosed(hang); len(lines) != 0 {
		t.Fatalf("the holder read %q", lines)
	}
	if r := closes.waitReason(t, holderID); r != gateway.ReasonIdle {
		t.Fatalf("holder closed for %q after its transfer, want %q", r, gateway.ReasonIdle)
	}
}

// dataConn accepts one data connection from a fresh client through dl and
// drains it on the server side, as a STOR would, until it closes.
func dataConn(t *testing.T, dl net.Listener) (client net.Conn, server *gateway.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", dl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	acc, err := dl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	gc := acc.(*gateway.Conn)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer gc.Close()
		_, _ = io.Copy(io.Discard, gc)
	}()
	t.Cleanup(func() {
		gc.Close()
		wg.Wait()
	})
	return c, gc
}

func TestProgressTimeout(t *testing.T) {
	gw, _ := newAcceptGateway(t, func(c *config.Connections) { c.ProgressTimeout = 300 * time.Millisecond })
	closes := watchCloses(gw)
	srv := serveLine(t, gw)
	ctl := greeted(t, srv.addr())
	parent := sessionOf(t, gw, ctl)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if got := ctl.cmd("LOGIN alice alice-pw"); got != "230 ok" {
		t.Fatalf("LOGIN: %q", got)
	}
	dl := gw.NewDataListener(testProto(), raw, parent, gateway.DataOptions{})
	t.Cleanup(func() { dl.Close() })

	stalled, stalledSrv := dataConn(t, dl)
	busy, busySrv := dataConn(t, dl)
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		_ = busy.SetWriteDeadline(time.Now().Add(hang))
		if _, err := busy.Write([]byte{'x'}); err != nil {
			t.Fatalf("a data connection moving a byte every 50ms was cut: %v", err)
		}
	}
	if r, closed := closes.reason(busySrv.Session().ID); closed {
		t.Fatalf("a data connection moving a byte every 50ms was closed: %s", r)
	}
	_ = stalled.SetReadDeadline(time.Now().Add(hang))
	if n, err := stalled.Read(make([]byte, 1)); n != 0 || !isClosed(err) {
		t.Fatalf("stalled data connection: read %d, %v; want EOF", n, err)
	}
	if r := closes.waitReason(t, stalledSrv.Session().ID); r != gateway.ReasonProgress {
		t.Fatalf("stalled data connection closed for %q, want %q", r, gateway.ReasonProgress)
	}
	if _, ok := gw.Registry().Get(busySrv.Session().ID); !ok {
		t.Fatal("the busy data connection's session is gone")
	}
	ctl.ping() // the control connection is untouched
	// Closing the control connection closes its data connections.
	ctl.quit()
	_ = busy.SetReadDeadline(time.Now().Add(hang))
	if _, err := busy.Read(make([]byte, 1)); !isClosed(err) {
		t.Fatalf("data connection after its control connection closed: %v", err)
	}
	waitFor(t, hang, "every session to leave", func() bool { return gw.Registry().Len() == 0 })
}

func TestProxyProtocol(t *testing.T) {
	newGW := func(t *testing.T) (*gateway.Gateway, *lineServer, *closeLog) {
		gw, _ := newAcceptGateway(t, func(c *config.Connections) {
			c.ProxyProtocol.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
			c.MaxPerIP = 1
		})
		closes := watchCloses(gw)
		return gw, serveLine(t, gw), closes
	}
	dst := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 2121}
	src := func(ip string, port int) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	refusedByLimit := func(t *testing.T, cl *client) {
		t.Helper()
		lines := cl.expectClosed(hang)
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") || !strings.Contains(lines[0], "too many connections") {
			t.Fatalf("second connection from the same PROXY source read %q, want one 421 too many connections", lines)
		}
	}
	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d from a trusted proxy", version), func(t *testing.T) {
			gw, srv, _ := newGW(t)
			dialVia := func(from *net.TCPAddr) *client {
				cl := dialLine(t, srv.addr())
				_ = cl.c.SetWriteDeadline(time.Now().Add(hang))
				if _, err := proxyproto.HeaderProxyFromAddrs(version, from, dst).WriteTo(cl.c); err != nil {
					t.Fatal(err)
				}
				return cl
			}
			first := dialVia(src("203.0.113.7", 40000))
			first.expect("220 hello")
			first.ping()
			s, ok := gw.Registry().Lookup(dst, src("203.0.113.7", 40000))
			if !ok {
				t.Fatalf("no session for 203.0.113.7:40000 -> %v among %v", dst, remotesOf(gw))
			}
			if info := s.Info(); info.Remote != "203.0.113.7:40000" || info.Local != dst.String() {
				t.Fatalf("session info %+v", info)
			}
			// The limit per IP counts the client, not the proxy.
			refusedByLimit(t, dialVia(src("203.0.113.7", 40001)))
			other := dialVia(src("203.0.113.8", 40000))
			other.expect("220 hello")
			other.ping()
			first.ping()
		})
	}

	t.Run("trusted proxy without a header", func(t *testing.T) {
		gw, srv, _ := newGW(t)
		cl := dialLine(t, srv.addr())
		if lines := cl.expectClosed(15 * time.Second); len(lines) != 0 {
			t.Fatalf("a trusted proxy's connection without a header read %q", lines)
		}
		if got := gw.Registry().Len(); got != 0 {
			t.Fatalf("%d sessions registered: %v", got, remotesOf(gw))
		}
	})

	t.Run("untrusted address", func(t *testing.T) {
		gw, srv, closes := newGW(t)
		spoof := dialLineFrom(t, "127.0.0.2", srv.addr())
		spoof.send("PROXY TCP4 203.0.113.7 192.0.2.1 40000 2121")
		lines := spoof.expectClosed(hang)
		if len(lines) > 1 || (len(lines) == 1 && lines[0] != "220 hello") {
			t.Fatalf("an untrusted client sending a PROXY header read %q, want at most the greeting", lines)
		}
		waitFor(t, hang, "the refused session to leave", func() bool { return gw.Registry().Len() == 0 })
		// Without a header, the same address is served as itself. Its
		// first command starts as a PROXY v1 signature does and is shorter
		// than a v2 signature.
		plain := dialLineFrom(t, "127.0.0.2", srv.addr())
		plain.expect("220 hello")
		plain.ping()
		if s := sessionOf(t, gw, plain); !strings.HasPrefix(s.Remote.String(), "127.0.0.2:") {
			t.Fatalf("session remote %v", s.Remote)
		}
		plain.quit()
		waitFor(t, hang, "the session to leave", func() bool { return gw.Registry().Len() == 0 })
		closes.mu.Lock()
		defer closes.mu.Unlock()
		for _, r := range closes.remotes {
			if strings.HasPrefix(r, "203.0.113.") {
				t.Fatalf("a session was registered with the spoofed address %s", r)
			}
		}
	})
}

// remotesOf lists the registered sessions' remote addresses.
func remotesOf(gw *gateway.Gateway) []string {
	var out []string
	for _, s := range gw.Registry().Sessions() {
		out = append(out, s.Remote.String())
	}
	return out
}

func TestShutdownDrains(t *testing.T) {
	t.Run("transfers finish", func(t *testing.T) {
		gw, root := newAcceptGateway(t, nil)
		closes := watchCloses(gw)
		srv := serveLine(t, gw)
		holder := greeted(t, srv.addr())
		if got := holder.cmd("LOGIN alice alice-pw"); got != "230 ok" {
			t.Fatalf("LOGIN: %q", got)
		}
		if got := holder.cmd("HOLD app.php"); got != "150 holding" {
			t.Fatalf("HOLD: %q", got)
		}
		idle := greeted(t, srv.addr())
		idleID := sessionOf(t, gw, idle).ID

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- gw.Shutdown(ctx)
		}()
		if lines := idle.expectClosed(hang); len(lines) != 0 {
			t.Fatalf("idle client read %q while draining", lines)
		}
		if r := closes.waitReason(t, idleID); r != gateway.ReasonDrain {
			t.Fatalf("idle client closed for %q, want %q", r, gateway.ReasonDrain)
		}
		// The listener is gone: no new client is greeted.
		if c, err := net.DialTimeout("tcp", srv.addr(), hang); err == nil {
			cl := &client{t: t, c: c, r: bufio.NewReader(c)}
			t.Cleanup(func() { c.Close() })
			for _, l := range cl.expectClosed(hang) {
				if l == "220 hello" {
					t.Fatal("a new connection was served while draining")
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a transfer in progress", err)
		default:
		}
		holder.ping() // still served
		if got := holder.cmd("DONE"); got != "226 done" {
			t.Fatalf("DONE while draining: %q", got)
		}
		holder.expectClosed(hang)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(hang):
			t.Fatal("Shutdown did not return after the last transfer ended")
		}
		if n := gw.Registry().Len(); n != 0 {
			t.Fatalf("%d sessions after Shutdown", n)
		}
		got, err := os.ReadFile(filepath.Join(root, "u", "app.php"))
		if err != nil || string(got) != holdPart1+holdPart2 {
			t.Fatalf("uploaded file: %q, %v", got, err)
		}
	})

	t.Run("deadline cuts transfers", func(t *testing.T) {
		gw, root := newAcceptGateway(t, nil)
		srv := serveLine(t, gw)
		holder := greeted(t, srv.addr())
		if got := holder.cmd("LOGIN alice alice-pw"); got != "230 ok" {
			t.Fatalf("LOGIN: %q", got)
		}
		if got := holder.cmd("HOLD app.php"); got != "150 holding" {
			t.Fatalf("HOLD: %q", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if err := gw.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown with a transfer that never ends: %v, want DeadlineExceeded", err)
		}
		holder.expectClosed(hang)
		if n := gw.Registry().Len(); n != 0 {
			t.Fatalf("%d sessions after Shutdown", n)
		}
		srv.stop() // the handler has aborted the upload
		if _, err := os.Stat(filepath.Join(root, "u", "app.php")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the cut upload was committed: %v", err)
		}
		var names []string
		waitFor(t, hang, "no temp file left", func() bool {
			ents, err := os.ReadDir(filepath.Join(root, "u"))
			if err != nil {
				t.Fatal(err)
			}
			names = names[:0]
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return len(names) == 0
		})
	})
}

func TestKick(t *testing.T) {
	gw, _ := newAcceptGateway(t, nil)
	closes := watchCloses(gw)
	srv := serveLine(t, gw)
	victim, bystander := greeted(t, srv.addr()), greeted(t, srv.addr())
	id := sessionOf(t, gw, victim).ID
	if err := gw.Registry().Kick(id); err != nil {
		t.Fatal(err)
	}
	if lines := victim.expectClosed(hang); len(lines) != 0 {
		t.Fatalf("kicked client read %q", lines)
	}
	if r := closes.waitReason(t, id); r != gateway.ReasonKicked {
		t.Fatalf("closed for %q, want %q", r, gateway.ReasonKicked)
	}
	bystander.ping()
	if n := gw.Registry().Len(); n != 1 {
		t.Fatalf("%d sessions after a kick, want 1", n)
	}
	if err := gw.Registry().Kick(id); err == nil {
		t.Fatal("kicking a closed session succeeded")
	}
	if err := gw.Registry().Kick("no-such-id"); err == nil || !strings.Contains(err.Error(), "no-such-id") {
		t.Fatalf("kicking a missing session: %v", err)
	}
}

func TestSessionInfo(t *testing.T) {
	gw, _ := newAcceptGateway(t, nil)
	srv := serveLine(t, gw)
	cl := greeted(t, srv.addr())
	if got := cl.cmd("LOGIN alice alice-pw"); got != "230 ok" {
		t.Fatalf("LOGIN: %q", got)
	}
	cl.ping()
	s := sessionOf(t, gw, cl)
	info := s.Info()
	if info.ID != s.ID || info.User != "alice" || info.Protocol != "test" ||
		info.Remote != cl.c.LocalAddr().String() || info.Local != cl.c.RemoteAddr().String() {
		t.Fatalf("info %+v", info)
	}
	if in := int64(len("LOGIN alice alice-pw\r\nPING\r\n")); info.BytesIn != in {
		t.Errorf("bytes in %d, want %d", info.BytesIn, in)
	}
	// The server counts a reply once its write returns, which may be after
	// the client has read it.
	out := int64(len("220 hello\r\n230 ok\r\n200 PONG\r\n"))
	waitFor(t, hang, "bytes out to be counted", func() bool { return s.Info().BytesOut >= out })
	if got := s.Info().BytesOut; got != out {
		t.Errorf("bytes out %d, want %d", got, out)
	}
	if info.Socket == nil || !info.Socket.Keepalive {
		t.Errorf("socket options %v", info.Socket)
	}
	if info.LastActivity.Before(info.Start) || info.Parent != "" || info.Transfers != 0 {
		t.Errorf("info %+v", info)
	}
	// A request moves LastActivity forward.
	before := info.LastActivity
	waitFor(t, hang, "LastActivity to move", func() bool {
		time.Sleep(2 * time.Millisecond)
		cl.ping()
		return s.Info().LastActivity.After(before)
	})
	if got := cl.cmd("HOLD"); got != "150 holding" {
		t.Fatalf("HOLD: %q", got)
	}
	if n := s.Info().Transfers; n != 1 {
		t.Fatalf("%d transfers during HOLD", n)
	}
	if got := cl.cmd("DONE"); got != "226 done" {
		t.Fatalf("DONE: %q", got)
	}
	if n := s.Info().Transfers; n != 0 {
		t.Fatalf("%d transfers after DONE", n)
	}
	if _, err := strconv.ParseUint(s.ID, 10, 64); err != nil {
		t.Errorf("session ID %q", s.ID)
	}
}

// TestDataListenerBelongsToOneSession: a data listener admits connections
// for its control session only once it is logged in, only from its
// address unless AnyAddress, and frees its port when unused.
func TestDataListenerBelongsToOneSession(t *testing.T) {
	gw, _ := newAcceptGateway(t, nil)
	srv := serveLine(t, gw)
	ctl := greeted(t, srv.addr())
	parent := sessionOf(t, gw, ctl)
	listen := func(opts gateway.DataOptions) net.Listener {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dl := gw.NewDataListener(testProto(), raw, parent, opts)
		t.Cleanup(func() { dl.Close() })
		return dl
	}
	// refused dials dl from src and checks that Accept skips it: the
	// connection is closed without a byte and Accept is still waiting.
	refused := func(dl net.Listener, src, why string) {
		t.Helper()
		c := dialLineFrom(t, src, dl.Addr().String())
		_ = dl.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(300 * time.Millisecond))
		if acc, err := dl.Accept(); err == nil {
			acc.Close()
			t.Fatalf("%s: a data connection from %s was admitted", why, src)
		}
		if _, err := c.readLine(); !isClosed(err) {
			t.Fatalf("%s: the refused connection is not closed: %v", why, err)
		}
	}
	refused(listen(gateway.DataOptions{}), "127.0.0.1", "not logged in")
	if got := ctl.cmd("LOGIN alice alice-pw"); got != "230 ok" {
		t.Fatalf("LOGIN: %q", got)
	}
	refused(listen(gateway.DataOptions{}), "127.0.0.2", "another address")
	dl := listen(gateway.DataOptions{AnyAddress: true})
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", dl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acc, err := dl.Accept()
	if err != nil {
		t.Fatalf("AnyAddress refused 127.0.0.2: %v", err)
	}
	if s := acc.(*gateway.Conn).Session(); s.Parent != parent {
		t.Errorf("data session's parent %v, want %s", s.Parent, parent.ID)
	}
	acc.Close()

	unused := listen(gateway.DataOptions{UnusedTimeout: 50 * time.Millisecond})
	addr := unused.Addr().String()
	waitFor(t, hang, "the unused port to be freed", func() bool {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
		}
		return err == nil
	})
	if _, err := unused.Accept(); !errors.Is(err, gateway.ErrDataListenerUnused) {
		t.Fatalf("Accept on a freed port: %v, want ErrDataListenerUnused", err)
	}
}

// TestPeerClosed: a session's PeerClosed is false while its client holds
// the connection and true once the client has closed it, whether or not
// the server has read to the end yet (FTP asks it before committing an
// upload).
func TestPeerClosed(t *testing.T) {
	gw, _ := newAcceptGateway(t, nil)
	srv := serveLine(t, gw)
	cl, alive := greeted(t, srv.addr()), greeted(t, srv.addr())
	sess, other := sessionOf(t, gw, cl), sessionOf(t, gw, alive)
	if sess.PeerClosed() {
		t.Fatal("PeerClosed of a live connection")
	}
	cl.c.Close()
	waitFor(t, hang, "PeerClosed after the client closed", sess.PeerClosed)
	alive.ping()
	if other.PeerClosed() {
		t.Fatal("PeerClosed of the other, live connection")
	}
}
