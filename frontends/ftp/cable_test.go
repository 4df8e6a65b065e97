package ftp_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/netnstest"
)

// The cable test: an FTP client inside a network namespace vanishes
// without a FIN or an RST (its packets are dropped, then it is killed),
// and the gateway must reap its sessions through TCP keepalive and
// TCP_USER_TIMEOUT alone (idle and progress timeouts are an hour), abort
// the upload it was receiving, and release the agent's files.

// reapBound is the generous bound on reaping. The timers below make it
// about 4 s; only a phantom connection crosses a minute.
const reapBound = 60 * time.Second

// cableNetns names the namespaces and draws their subnets from
// 10.231.0.0/16, apart from the SFTP cable test's, which may run at the
// same time in another process.
var cableNetns = netnstest.Prefix{Netns: "upg-", HostIf: "upgh", PeerIf: "upgp", Octet: 231}

// storStall is how much the mid-STOR client sends before it stalls.
const storStall = 4 << 20

// Environment of the helper client process (TestHelperFTPClient).
const (
	helperMode = "UPGATE_FTP_HELPER_MODE" // idle, stor or retr
	helperAddr = "UPGATE_FTP_HELPER_ADDR"
	helperUser = "UPGATE_FTP_HELPER_USER"
	helperPass = "UPGATE_FTP_HELPER_PASS"
	helperPath = "UPGATE_FTP_HELPER_PATH"
	// helperDataVia, if set, is the host address data connections go to
	// (from the client's address on the first pair): see
	// netnstest.Netns.AddDataPath.
	helperDataVia = "UPGATE_FTP_HELPER_DATA_VIA"
	helperSrc     = "UPGATE_FTP_HELPER_SRC"
)

// TestHelperFTPClient is not a test: TestCableFTP runs the test binary
// with it inside a network namespace as the FTP client. It prints READY
// once it reached the state the case needs:
//   - idle: logged in; it quits cleanly when its stdin closes;
//   - stor: storStall bytes of an upload written, then the upload stalls;
//   - retr: the first 64 KiB of a download read, then 64 KiB every 100 ms;
//   - retr-slow: the same at 16 KiB every 100 ms.
func TestHelperFTPClient(t *testing.T) {
	mode := os.Getenv(helperMode)
	if mode == "" {
		t.Skip("helper process for TestCableFTP")
	}
	os.Exit(runHelperClient(mode))
}

func runHelperClient(mode string) int {
	opts := []ftp.DialOption{ftp.DialWithTimeout(10 * time.Second)}
	if via := os.Getenv(helperDataVia); via != "" {
		// The first dial is the control connection; the others are data
		// connections, sent over the second pair.
		var dials int
		src := &net.TCPAddr{IP: net.ParseIP(os.Getenv(helperSrc))}
		opts = append(opts, ftp.DialWithDialFunc(func(network, address string) (net.Conn, error) {
			dials++
			if dials == 1 {
				return net.DialTimeout(network, address, 10*time.Second)
			}
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
			return d.Dial(network, net.JoinHostPort(via, port))
		}))
	}
	c, err := ftp.Dial(os.Getenv(helperAddr), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 2
	}
	if err := c.Login(os.Getenv(helperUser), os.Getenv(helperPass)); err != nil {
		fmt.Fprintln(os.Stderr, "login:", err)
		return 2
	}
	name := os.Getenv(helperPath)
	switch mode {
	case "idle":
		fmt.Println("READY")
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := c.Quit(); err != nil {
			fmt.Fprintln(os.Stderr, "quit:", err)
			return 3
		}
		return 0
	case "stor":
		err := c.Stor(name, &netnstest.StallingReader{Left: storStall})
		fmt.Fprintln(os.Stderr, "STOR ended:", err)
		return 4
	case "retr", "retr-slow":
		r, err := c.Retr(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "RETR:", err)
			return 5
		}
		buf := make([]byte, 64<<10)
		if mode == "retr-slow" {
			buf = buf[:16<<10]
		}
		for first := true; ; first = false {
			if _, err := io.ReadFull(r, buf); err != nil {
				fmt.Fprintln(os.Stderr, "RETR read:", err)
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

// startHelper runs the test binary as an FTP client of e inside n, logged
// in as alice, and waits for READY. It is killed in t.Cleanup.
func startHelper(t *testing.T, n *netnstest.Netns, e *env, mode, name string, extraEnv ...string) *netnstest.Helper {
	t.Helper()
	env := append([]string{helperMode + "=" + mode, helperAddr + "=" + e.Addr,
		helperUser + "=alice", helperPass + "=" + gwtest.Users["alice"], helperPath + "=" + name}, extraEnv...)
	return n.StartHelper(t, "TestHelperFTPClient", env...)
}

// startCableGateway runs a gateway listening inside n's veth pair with
// short dead-peer timers and hour-long idle and progress timeouts, so only
// TCP keepalive and TCP_USER_TIMEOUT can reap a vanished client.
func startCableGateway(t *testing.T, n *netnstest.Netns) *env {
	t.Helper()
	return start(t, func(c *config.Config) {
		c.Listen.FTP = net.JoinHostPort(n.HostIP.String(), "0")
		c.Connections.Keepalive = config.Keepalive{Idle: 2 * time.Second, Interval: time.Second, Count: 2}
		c.Connections.UserTimeout = 4 * time.Second
		c.Connections.IdleTimeout = time.Hour
		c.Connections.ProgressTimeout = time.Hour
	})
}

// peerSessions returns the gateway's sessions from the namespace's
// address: control and data connections.
func peerSessions(e *env, n *netnstest.Netns) (control, data []*gateway.Session) {
	for _, s := range e.Srv.Gateway.Registry().Sessions() {
		ap, err := netip.ParseAddrPort(s.Remote.String())
		if err != nil || ap.Addr().Unmap() != n.PeerIP {
			continue
		}
		if s.Parent == nil {
			control = append(control, s)
		} else {
			data = append(data, s)
		}
	}
	return control, data
}

// vanish pulls the cable, kills the client (its FIN and RST go nowhere),
// checks the gateway did not notice at once, and waits until the gateway
// has reaped every session from the peer, the host has no ESTABLISHED
// connection to it, and the agent holds no file. It returns how long
// reaping took from the cable pull.
//
// inFlight says which timer the case exercises: false waits until every
// connection has nothing unacknowledged (keepalive probes only such
// sockets), true until one has data in flight (only TCP_USER_TIMEOUT
// bounds that one).
//
// kill false leaves the client running: the case pulls only part of its
// connections.
func vanish(t *testing.T, e *env, n *netnstest.Netns, h *netnstest.Helper, inFlight, kill bool) time.Duration {
	t.Helper()
	var before []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		before = n.Established(t)
		busy := 0
		for _, l := range before {
			if f := strings.Fields(l); len(f) > 1 && f[1] != "0" { // Send-Q
				busy++
			}
		}
		if len(before) > 0 && (busy > 0) == inFlight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections to the client not in the expected state (data in flight: %v) after 10s: %q", inFlight, before)
		}
	}
	// Every socket from the client, data connections included, carries the
	// configured dead-peer timers.
	want := gateway.SocketOptions{Keepalive: true, KeepaliveIdle: 2 * time.Second, KeepaliveInterval: time.Second, KeepaliveCount: 2, UserTimeout: 4 * time.Second}
	c, d := peerSessions(e, n)
	for _, s := range append(c, d...) {
		if got, err := s.SocketOptions(); err != nil || got != want {
			t.Errorf("%s session %s: socket options %v (err %v), want %v", s.Protocol, s.ID, got, err, want)
		}
	}
	t.Logf("before the cable pull, ss -tnoH state established dst %s:\n  %s", n.PeerIP, strings.Join(before, "\n  "))
	method := n.PullCable(t)
	pulled := time.Now()
	killed := "not killed"
	if kill {
		h.Kill(t)
		killed = fmt.Sprintf("client killed %v later", time.Since(pulled).Round(time.Millisecond))
	}

	// Keepalive cannot fire within 2 s of the last packet: a session gone
	// this early means the client's FIN or RST got through.
	time.Sleep(300 * time.Millisecond)
	if since := time.Since(pulled); since < 1500*time.Millisecond {
		if c, _ := peerSessions(e, n); len(c) == 0 {
			t.Fatalf("session gone %v after the cable pull (%s) and the kill: the client's FIN/RST reached the gateway", since, method)
		}
		if len(n.Established(t)) == 0 {
			t.Fatalf("no ESTABLISHED connection %v after the cable pull: the client's FIN/RST reached the host", since)
		}
	}

	for {
		c, d := peerSessions(e, n)
		if len(c)+len(d) == 0 {
			break
		}
		if time.Since(pulled) > reapBound {
			var live []string
			for _, s := range append(c, d...) {
				live = append(live, fmt.Sprintf("%+v", s.Info()))
			}
			t.Fatalf("%v after the cable pull (%s), the vanished client's sessions are still in the registry:\n  %s\nss:\n  %s",
				reapBound, method, strings.Join(live, "\n  "), strings.Join(n.Established(t), "\n  "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	reaped := time.Since(pulled)
	netnstest.WaitUntil(t, 10*time.Second, "the host still has ESTABLISHED connections to the vanished client", func() bool {
		return len(n.Established(t)) == 0
	})
	e.AgentIdle(t)
	t.Logf("cable pulled (%s), %s; sessions reaped %v after the pull", method, killed, reaped.Round(time.Millisecond))
	return reaped
}

func TestCableFTP(t *testing.T) {
	netnstest.Require(t)
	gwtest.RequireTool(t, "ss")

	// Control: the link stays up and the client quits; the session ends at
	// once, which proves the namespace, the helper and the polling work.
	t.Run("control", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		h := startHelper(t, n, e, "idle", "")
		netnstest.WaitUntil(t, 10*time.Second, "no logged-in session from the client", func() bool {
			c, _ := peerSessions(e, n)
			return len(c) == 1 && c[0].User() == "alice"
		})
		h.Stdin.Close()
		closed := netnstest.WaitUntil(t, reapBound, "the session is still registered after QUIT", func() bool {
			c, d := peerSessions(e, n)
			return len(c)+len(d) == 0
		})
		select {
		case <-h.Done:
			if h.Err != nil {
				t.Fatalf("helper client: %v\n%s", h.Err, h.Out)
			}
		case <-time.After(reapBound):
			t.Fatalf("helper client did not exit after QUIT:\n%s", h.Out)
		}
		netnstest.WaitUntil(t, 10*time.Second, "ESTABLISHED connections left after QUIT", func() bool {
			return len(n.Established(t)) == 0
		})
		e.AgentIdle(t)
		t.Logf("control: the session closed %v after the client quit", closed.Round(time.Millisecond))
	})

	// An idle logged-in client vanishes: keepalive reaps it.
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		h := startHelper(t, n, e, "idle", "")
		netnstest.WaitUntil(t, 10*time.Second, "no logged-in session from the client", func() bool {
			c, _ := peerSessions(e, n)
			return len(c) == 1 && c[0].User() == "alice"
		})
		reaped := vanish(t, e, n, h, false, true)
		t.Logf("idle: reaped in %v", reaped.Round(time.Millisecond))
	})

	// A client vanishes in the middle of an upload: the upload is
	// discarded, a replaced file keeps its old content, no temp file stays.
	for _, replace := range []bool{false, true} {
		name := "stor-new"
		if replace {
			name = "stor-replace"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := netnstest.New(t, cableNetns)
			e := startCableGateway(t, n)
			dir := e.UserDir("alice")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(dir, "upload.bin")
			if replace {
				if err := os.WriteFile(target, []byte("<?php echo 'old content';\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
				if err := os.Chtimes(target, old, old); err != nil {
					t.Fatal(err)
				}
			}
			want := netnstest.DirState(t, dir)
			h := startHelper(t, n, e, "stor", "upload.bin")
			netnstest.WaitUntil(t, 30*time.Second, "the upload is not in progress in the gateway and the agent", func() bool {
				c, d := peerSessions(e, n)
				if len(c) != 1 || c[0].Info().Transfers == 0 || len(d) != 1 || d[0].Info().BytesIn < storStall {
					return false
				}
				return len(agenttest.TempFiles(t, dir)) == 1
			})
			reaped := vanish(t, e, n, h, false, true)
			netnstest.SameState(t, "after the vanished upload", netnstest.DirState(t, dir), want)
			t.Logf("%s: reaped in %v", name, reaped.Round(time.Millisecond))
		})
	}

	// A client vanishes in the middle of a download, with data in flight
	// (or a zero window): only TCP_USER_TIMEOUT bounds that socket.
	t.Run("retr", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		e := startCableGateway(t, n)
		dir := e.UserDir("alice")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 50<<20/16)
		if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		want := netnstest.DirState(t, dir)
		h := startHelper(t, n, e, "retr", "big.bin")
		netnstest.WaitUntil(t, 30*time.Second, "the download is not in progress", func() bool {
			c, d := peerSessions(e, n)
			return len(c) == 1 && c[0].Info().Transfers > 0 && len(d) == 1 && d[0].Info().BytesOut >= 1<<20
		})
		reaped := vanish(t, e, n, h, true, true)
		netnstest.SameState(t, "after the vanished download", netnstest.DirState(t, dir), want)
		t.Logf("retr: reaped in %v", reaped.Round(time.Millisecond))
	})

	// Only the control connection vanishes during a download whose data
	// connection is healthy (a NAT or firewall dropped the control
	// connection's state): the kernel's keepalive verdict on the control
	// connection must end the session and its transfer, not be mistaken
	// for an idle timeout while the download goes on.
	t.Run("control-vanishes-mid-retr", func(t *testing.T) {
		t.Parallel()
		n := netnstest.New(t, cableNetns)
		via := n.AddDataPath(t)
		e := startCableGateway(t, n)
		dir := e.UserDir("alice")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 50<<20/16)
		if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		want := netnstest.DirState(t, dir)
		h := startHelper(t, n, e, "retr-slow", "big.bin", helperDataVia+"="+via.String(), helperSrc+"="+n.PeerIP.String())
		netnstest.WaitUntil(t, 30*time.Second, "the download is not in progress", func() bool {
			c, d := peerSessions(e, n)
			return len(c) == 1 && c[0].Info().Transfers > 0 && len(d) == 1 && d[0].Info().BytesOut >= 1<<20
		})
		reaped := vanish(t, e, n, h, true, false)
		netnstest.SameState(t, "after the vanished control connection", netnstest.DirState(t, dir), want)
		t.Logf("control-vanishes-mid-retr: reaped in %v", reaped.Round(time.Millisecond))
	})
}
