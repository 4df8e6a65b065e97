package server_test

// Hostile tests of issue 14 ("Hardening"): each performs an attack against
// a running gateway with real clients and checks the outcome: a clear
// refusal in the protocol's terms, nothing written, the other user
// unaffected.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

// TestHardeningDefenderSuccessDoesNotForgiveOtherNames: nine wrong
// passwords for bob, then a good login as alice, from one address,
// repeated. A success used to wipe the address's failures, so this ran 36
// guesses a minute for ever; now the tenth guess at bob bans the address.
func TestHardeningDefenderSuccessDoesNotForgiveOtherNames(t *testing.T) {
	srv, _ := startAll(t)
	ftpAddr, sftpAddr := srv.FTPAddr.String(), srv.SFTPAddr.String()
	const attacker = "127.0.0.3"
	guesses, banned := 0, false
	for round := 0; round < 4 && !banned; round++ {
		for i := 0; i < 9 && !banned; i++ {
			var err error
			if i%2 == 0 {
				err = ftpLogin(t, attacker, ftpAddr, "bob", "guess")
			} else {
				err = sshLogin(t, attacker, sftpAddr, "bob", "guess")
			}
			if err == nil {
				t.Fatal("a wrong password for bob logged in")
			}
			if strings.Contains(err.Error(), "banned") {
				banned = true
				break
			}
			guesses++
		}
		if banned {
			break
		}
		if err := ftpLogin(t, attacker, ftpAddr, "alice", "pw"); err != nil {
			if strings.Contains(err.Error(), "banned") {
				banned = true
				break
			}
			t.Fatalf("round %d: alice's good login: %v", round, err)
		}
	}
	if !banned {
		t.Fatalf("%d guesses at bob interleaved with alice's logins: never banned", guesses)
	}
	if guesses > 10 {
		t.Errorf("banned only after %d guesses at bob; defender.max_failures is 10", guesses)
	}
	// The ban is clear on both protocols, alice's password included.
	if err := ftpLogin(t, attacker, ftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "421") || !strings.Contains(err.Error(), "banned") {
		t.Errorf("FTP from the banned address: %v, want a 421 naming the ban", err)
	}
	if err := sshLogin(t, attacker, sftpAddr, "alice", "pw"); err == nil || !strings.Contains(err.Error(), "banned") {
		t.Errorf("SSH from the banned address: %v, want a disconnect naming the ban", err)
	}
	// Nobody else is affected.
	if err := ftpLogin(t, "127.0.0.1", ftpAddr, "bob", "pw"); err != nil {
		t.Errorf("bob from 127.0.0.1: %v", err)
	}
	if err := sshLogin(t, "127.0.0.1", sftpAddr, "alice", "pw"); err != nil {
		t.Errorf("alice over SSH from 127.0.0.1: %v", err)
	}
	// A user's own typos, each round ended by their own login, are
	// forgiven: 3 x 5 wrong passwords for alice, never banned.
	const typist = "127.0.0.4"
	for round := range 5 {
		for range 3 {
			if err := ftpLogin(t, typist, ftpAddr, "alice", "typo"); err == nil || strings.Contains(err.Error(), "banned") {
				t.Fatalf("round %d: alice's typo: %v", round, err)
			}
		}
		if err := sshLogin(t, typist, sftpAddr, "alice", "pw"); err != nil {
			t.Fatalf("round %d: alice after her typos: %v", round, err)
		}
	}
}

// hOp bounds every client operation of these tests: only a hang crosses it.
const hOp = 30 * time.Second

// hRaw is a raw FTP control connection from a chosen source address.
type hRaw struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

// hDial opens a control connection from src and reads the greeting.
func hDial(t *testing.T, src, addr string) *hRaw {
	t.Helper()
	r := &hRaw{t: t, nc: dialFrom(t, src, addr)}
	r.tp = textproto.NewConn(r.nc)
	t.Cleanup(func() { r.tp.Close() })
	_ = r.nc.SetDeadline(time.Now().Add(hOp))
	if _, _, err := r.tp.ReadResponse(220); err != nil {
		t.Fatalf("FTP greeting: %v", err)
	}
	return r
}

// hLogin is hDial and a login.
func hLogin(t *testing.T, src, addr, user string) *hRaw {
	t.Helper()
	r := hDial(t, src, addr)
	r.expect("USER "+user, 331)
	r.expect("PASS pw", 230)
	r.expect("TYPE I", 200)
	return r
}

// cmd sends a line and reads the reply; an I/O error fails the test.
func (r *hRaw) cmd(line string) (int, string) {
	r.t.Helper()
	_ = r.nc.SetDeadline(time.Now().Add(hOp))
	if err := r.tp.PrintfLine("%s", line); err != nil {
		r.t.Fatalf("%s: %v", line, err)
	}
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil {
		r.t.Fatalf("%s: %v", line, err)
	}
	return code, msg
}

// reply reads one more reply.
func (r *hRaw) reply() (int, string) {
	r.t.Helper()
	_ = r.nc.SetDeadline(time.Now().Add(hOp))
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil {
		r.t.Fatalf("reply: %v", err)
	}
	return code, msg
}

func (r *hRaw) expect(line string, want int) string {
	r.t.Helper()
	code, msg := r.cmd(line)
	if code != want {
		r.t.Fatalf("%s: %d %s, want %d", line, code, msg, want)
	}
	return msg
}

// epsv sends EPSV and returns the announced port.
func (r *hRaw) epsv() int {
	r.t.Helper()
	msg := r.expect("EPSV", 229)
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if i < 0 || j < i {
		r.t.Fatalf("EPSV reply %q", msg)
	}
	p, err := strconv.Atoi(msg[i+4 : j])
	if err != nil {
		r.t.Fatalf("EPSV reply %q: %v", msg, err)
	}
	return p
}

// closed waits for the server to close the connection and returns the
// replies it sent before.
func (r *hRaw) closed() []string {
	r.t.Helper()
	var got []string
	_ = r.nc.SetReadDeadline(time.Now().Add(hOp))
	for range 100 {
		line, err := r.tp.ReadLine()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("the server did not close the connection within %v (replies %q)", hOp, got)
			}
			return got
		}
		got = append(got, line)
	}
	r.t.Fatalf("endless replies: %q", got)
	return nil
}

// hSession finds the live session of protocol proto whose client address
// is the local address of c.
func hSession(t *testing.T, srv *server.Server, c net.Conn) *gateway.Session {
	t.Helper()
	for _, s := range srv.Gateway.Registry().Sessions() {
		if s.Remote.String() == c.LocalAddr().String() {
			return s
		}
	}
	t.Fatalf("no session for client %s", c.LocalAddr())
	return nil
}

// hDataSessions returns the live FTP data sessions.
func hDataSessions(srv *server.Server) []*gateway.Session {
	var out []*gateway.Session
	for _, s := range srv.Gateway.Registry().Sessions() {
		if s.Parent != nil {
			out = append(out, s)
		}
	}
	return out
}

// hReadAll reads a data connection to its end within hOp.
func hReadAll(t *testing.T, c net.Conn) ([]byte, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(hOp))
	return io.ReadAll(c)
}

// TestHardeningFTPDataFromAnotherAddress: a stranger (127.0.0.2) with a
// control connection that never logs in connects to alice's passive port
// before she does. Data connections used to be matched to control sessions
// by client IP: the stranger's was admitted under its own session, and
// alice's RETR got 425. It is now refused (closed with no byte) and alice's
// own gets her file.
func TestHardeningFTPDataFromAnotherAddress(t *testing.T) {
	srv, root := startAll(t)
	addr := srv.FTPAddr.String()
	const secret = "alice's secret, for alice only"
	alice := hLogin(t, "127.0.0.1", addr, "alice") // creates her root
	if err := writeFile(filepath.Join(root, "alice", "secret.txt"), secret); err != nil {
		t.Fatal(err)
	}
	// The stranger has a control connection of its own, never logged in:
	// with matching by IP, that made its data connection welcome.
	hDial(t, "127.0.0.2", addr)
	port := alice.epsv()
	dataAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	stranger := dialFrom(t, "127.0.0.2", dataAddr)
	defer stranger.Close()
	own := dialFrom(t, "127.0.0.1", dataAddr)
	defer own.Close()

	if code, msg := alice.cmd("RETR secret.txt"); code != 150 && code != 125 {
		t.Fatalf("RETR: %d %s", code, msg)
	}
	got, err := hReadAll(t, own)
	if err != nil || string(got) != secret {
		t.Fatalf("alice's own data connection read %q, %v; want her file", got, err)
	}
	if code, msg := alice.reply(); code != 226 {
		t.Fatalf("after RETR: %d %s, want 226", code, msg)
	}
	leaked, _ := hReadAll(t, stranger)
	if len(leaked) != 0 {
		t.Fatalf("SECURITY: the stranger's connection to alice's passive port read %q", leaked)
	}
	for _, s := range hDataSessions(srv) {
		if strings.HasPrefix(s.Remote.String(), "127.0.0.2:") {
			t.Errorf("the stranger's data connection is a session under %s", s.Parent.ID)
		}
	}
	if !metric(t, srv.AdminAddr.String(), `upgate_connections_closed_total{proto="ftp-data",reason="data refused"} 1`) {
		t.Error("the refused data connection is not counted in upgate_connections_closed_total")
	}
	alice.expect("NOOP", 200)
}

// TestHardeningFTPDataSessionsShareAnAddress: alice, bob and a connection
// that never logs in share one address (a NAT, several IDE windows). Data
// connections used to go to whichever session of that address came first:
// bob's upload hung under alice's or the stranger's session, and kicking
// alice killed it. Now a data connection belongs to the session whose
// PASV opened the port, and kicking alice (and the stranger leaving)
// leaves bob's upload whole while alice's unfinished one is dropped.
func TestHardeningFTPDataSessionsShareAnAddress(t *testing.T) {
	srv, root := startAll(t)
	addr := srv.FTPAddr.String()
	const nat = "127.0.0.5"
	stranger := hDial(t, nat, addr)
	alice := hLogin(t, nat, addr, "alice")
	bob := hLogin(t, nat, addr, "bob")
	aliceSess, bobSess := hSession(t, srv, alice.nc), hSession(t, srv, bob.nc)
	// alice uploads too, and is mid-transfer when bob's data connection
	// arrives: both sessions of the address have a transfer open.
	aliceData := dialFrom(t, nat, net.JoinHostPort("127.0.0.1", strconv.Itoa(alice.epsv())))
	defer aliceData.Close()
	if code, msg := alice.cmd("STOR big.bin"); code != 150 && code != 125 {
		t.Fatalf("alice's STOR: %d %s", code, msg)
	}
	_ = aliceData.SetWriteDeadline(time.Now().Add(hOp))
	if _, err := aliceData.Write([]byte("alice's unfinished upload")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's data session", func() bool { return len(hDataSessions(srv)) == 1 })

	port := bob.epsv()
	data := dialFrom(t, nat, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	defer data.Close()
	if code, msg := bob.cmd("STOR big.bin"); code != 150 && code != 125 {
		t.Fatalf("STOR: %d %s", code, msg)
	}
	payload := bytes.Repeat([]byte("bob's upload "), 200_000) // 2.6 MB
	half := len(payload) / 2
	_ = data.SetWriteDeadline(time.Now().Add(hOp))
	if _, err := data.Write(payload[:half]); err != nil {
		t.Fatal(err)
	}
	var ds []*gateway.Session
	waitFor(t, "bob's data session", func() bool { ds = hDataSessions(srv); return len(ds) == 2 })
	for _, d := range ds {
		want := aliceSess
		if d.Remote.String() == data.LocalAddr().String() {
			want = bobSess
		}
		if d.Parent != want {
			t.Fatalf("data connection %s is under session %s (user %q), want %s's %s", d.Remote, d.Parent.ID, d.Parent.User(), want.User(), want.ID)
		}
	}

	// Kick alice; the stranger leaves.
	if err := (&admin.Client{Addr: srv.AdminAddr.String()}).Kick(context.Background(), aliceSess.ID); err != nil {
		t.Fatal(err)
	}
	alice.closed()
	stranger.tp.Close()
	waitFor(t, "alice's session to end", func() bool { _, ok := srv.Gateway.Registry().Get(aliceSess.ID); return !ok })

	if _, err := data.Write(payload[half:]); err != nil {
		t.Fatalf("bob's upload broke when alice was kicked: %v", err)
	}
	data.Close()
	if code, msg := bob.reply(); code != 226 {
		t.Fatalf("bob's upload: %d %s, want 226", code, msg)
	}
	got, err := os.ReadFile(filepath.Join(root, "bob", "big.bin"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("bob's big.bin: %d bytes, %v; want his %d", len(got), err, len(payload))
	}
	if _, err := os.Stat(filepath.Join(root, "alice", "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("alice's kicked, unfinished upload was committed: %v", err)
	}
	bob.expect("NOOP", 200)
}

// TestHardeningFTPNoDataBeforeLogin: a connection that has not logged in
// gets no data connection of any kind.
func TestHardeningFTPNoDataBeforeLogin(t *testing.T) {
	srv, _ := startAll(t)
	r := hDial(t, "127.0.0.1", srv.FTPAddr.String())
	for _, line := range []string{"PASV", "EPSV", "PORT 127,0,0,1,156,64", "EPRT |1|127.0.0.1|40000|"} {
		if code, msg := r.cmd(line); code != 530 {
			t.Errorf("%s before login: %d %s, want 530", line, code, msg)
		}
	}
	if n := len(hDataSessions(srv)); n != 0 {
		t.Errorf("%d data sessions", n)
	}
}

// hFreeRange finds n consecutive ports that nothing listens on, for a
// passive range (a test cannot pass "any free port" where the attack is
// to fill a range).
func hFreeRange(t *testing.T, n int) (first int) {
	t.Helper()
	// Below the kernel's ephemeral range (32768 and up by default), where
	// other tests' port-0 listeners and outgoing connections cannot take
	// a port of the range between this check and the gateway's PASV.
	for try := range 200 {
		first = 20000 + (os.Getpid()*7919+try*104729)%(12000-n)
		ok := true
		for p := first; p < first+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return first
		}
	}
	t.Fatalf("no %d free consecutive ports", n)
	return 0
}

// hHeld counts the ports of [first, first+n) that something listens on.
func hHeld(first, n int) int {
	held := 0
	for p := first; p < first+n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			held++
			continue
		}
		l.Close()
	}
	return held
}

// startPassive runs a gateway with FTP on a passive range of n free ports.
func startPassive(t *testing.T, n int, unused time.Duration) (*server.Server, int) {
	t.Helper()
	first := hFreeRange(t, n)
	cfg := gwtest.Config(t, t.TempDir(), map[string]string{"alice": "pw", "bob": "pw"})
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{First: uint16(first), Last: uint16(first + n - 1)}
	cfg.FTP.PassiveTimeout = unused
	return gwtest.Run(t, cfg), first
}

// TestHardeningPassivePortsOnePerSession: idle sessions that each sent
// PASV used to hold the whole range for an hour, and PASV/EPRT in turn
// held one more port each time. Now a session holds one port at most, a
// full range is a clear 421 for the next session only, and a session that
// leaves passive mode frees its port at once.
func TestHardeningPassivePortsOnePerSession(t *testing.T) {
	const n = 4
	srv, first := startPassive(t, n, time.Hour)
	addr := srv.FTPAddr.String()
	var sessions []*hRaw
	for i := range n {
		s := hLogin(t, "127.0.0.1", addr, []string{"alice", "bob"}[i%2])
		if p := s.epsv(); p < first || p >= first+n {
			t.Fatalf("EPSV port %d outside the range %d-%d", p, first, first+n-1)
		}
		sessions = append(sessions, s)
	}
	late := hLogin(t, "127.0.0.1", addr, "alice")
	code, msg := late.cmd("EPSV")
	if code != 421 || !strings.Contains(msg, "Could not listen") {
		t.Fatalf("EPSV with the range full: %d %s, want 421 Could not listen", code, msg)
	}

	// One session asking again and again holds one port.
	for range 20 {
		sessions[0].epsv()
		sessions[0].expect("PASV", 227)
	}
	if held := hHeld(first, n); held != n {
		t.Fatalf("%d of %d ports held after one session's 40 PASVs, want %d", held, n, n)
	}
	if code, _ := late.cmd("EPSV"); code != 421 {
		t.Fatalf("a session's repeated PASVs freed or took another port: EPSV %d", code)
	}

	// PASV then EPRT, in turn: the passive port is closed by the EPRT.
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	eprt := fmt.Sprintf("EPRT |1|127.0.0.1|%d|", cl.Addr().(*net.TCPAddr).Port)
	for range 10 {
		sessions[0].epsv()
		sessions[0].expect(eprt, 200)
	}
	if held := hHeld(first, n); held != n-1 {
		t.Fatalf("%d ports held after PASV/EPRT in turn, want %d", held, n-1)
	}
	late.epsv() // the freed port
}

// TestHardeningPassivePortsUnusedReleased: a passive port no transfer
// command uses is freed after ftp.passive_timeout; the session that left
// it gets a 425 that says so, and the next session gets the port.
func TestHardeningPassivePortsUnusedReleased(t *testing.T) {
	const n = 2
	srv, first := startPassive(t, n, 300*time.Millisecond)
	addr := srv.FTPAddr.String()
	idle := []*hRaw{hLogin(t, "127.0.0.1", addr, "alice"), hLogin(t, "127.0.0.1", addr, "bob")}
	for _, s := range idle {
		s.epsv()
	}
	late := hLogin(t, "127.0.0.1", addr, "alice")
	got := false
	for range 300 {
		if code, _ := late.cmd("EPSV"); code == 229 {
			got = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !got {
		t.Fatal("the idle sessions' passive ports were never freed")
	}
	code, msg := idle[0].cmd("LIST")
	if code == 150 {
		code, msg = idle[0].reply()
	}
	if code != 425 || !strings.Contains(msg, "passive data port released") {
		t.Fatalf("LIST on a released passive port: %d %s, want 425 saying the port was released", code, msg)
	}
	idle[0].expect("NOOP", 200)
	// The late session got the first port freed; the other idle one's
	// timer may fire a little later on a loaded machine.
	waitFor(t, "every port but the late session's to be freed", func() bool { return hHeld(first, n) <= 1 })
}

// TestHardeningFTPLoginTimeout: a connection that never logs in used to
// live for the idle timeout, for ever with NOOPs. Now it gets "421 Login
// timeout" after ftp.login_timeout, NOOPs or not; a logged-in session is
// not bound by it.
func TestHardeningFTPLoginTimeout(t *testing.T) {
	cfg := gwtest.Config(t, t.TempDir(), map[string]string{"alice": "pw"})
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	cfg.FTP.LoginTimeout = 500 * time.Millisecond
	srv := gwtest.Run(t, cfg)
	addr := srv.FTPAddr.String()
	alice := hLogin(t, "127.0.0.1", addr, "alice")
	lurker := hDial(t, "127.0.0.1", addr)
	var code int
	var msg string
	for range 400 { // NOOP every 50 ms: 20 s at most
		code, msg = lurker.cmd("NOOP")
		if code != 200 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != 421 || !strings.Contains(msg, "Login timeout") {
		t.Fatalf("a NOOPing connection that never logged in: %d %s, want 421 Login timeout", code, msg)
	}
	lurker.closed()
	waitFor(t, "the lurker's session to end", func() bool {
		for _, s := range srv.Gateway.Registry().Sessions() {
			if s.User() == "" {
				return false
			}
		}
		return true
	})
	alice.expect("NOOP", 200)
}

// hHTTP sends one request to the admin API with the given Host header.
func hHTTP(t *testing.T, adminAddr, method, host, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+adminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: hOp}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHardeningAdminAPI: the tokenless admin API is for loopback only. A
// page that rebinds its own host name to 127.0.0.1 reaches it with its
// name in Host: refused, and its DELETE kicks nobody. Off loopback, a
// tokenless admin API does not start.
func TestHardeningAdminAPI(t *testing.T) {
	srv, _ := startAll(t)
	adm := srv.AdminAddr.String()
	_, port, _ := net.SplitHostPort(adm)
	alice := hLogin(t, "127.0.0.1", srv.FTPAddr.String(), "alice")
	id := hSession(t, srv, alice.nc).ID

	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example", "0.0.0.0:" + port, "10.0.0.1"} {
		if code, body := hHTTP(t, adm, http.MethodDelete, host, "/api/sessions/"+id); code != http.StatusForbidden {
			t.Errorf("DELETE with Host %q: %d %s, want 403", host, code, body)
		}
		if code, body := hHTTP(t, adm, http.MethodGet, host, "/api/sessions"); code != http.StatusForbidden || strings.Contains(body, "alice") {
			t.Errorf("GET /api/sessions with Host %q: %d %q, want 403 and no session", host, code, body)
		}
		if code, _ := hHTTP(t, adm, http.MethodGet, host, "/metrics"); code != http.StatusForbidden {
			t.Errorf("GET /metrics with Host %q: %d, want 403", host, code)
		}
	}
	alice.expect("NOOP", 200) // not kicked
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST", "localhost.", "[::1]:" + port, "127.1.2.3"} {
		if code, body := hHTTP(t, adm, http.MethodGet, host, "/api/sessions"); code != http.StatusOK || !strings.Contains(body, `"alice"`) {
			t.Errorf("GET /api/sessions with Host %q: %d %s, want 200 listing alice", host, code, body)
		}
	}
	if code, _ := hHTTP(t, adm, http.MethodGet, "evil.example", "/healthz"); code != http.StatusOK {
		t.Errorf("probe with a foreign Host: %d, want 200 (probes carry no data)", code)
	}

	// Off loopback without a token: refused by validation, naming the key,
	// and by server.Start for a config that skipped it.
	cfg := gwtest.Config(t, t.TempDir(), map[string]string{"alice": "pw"})
	cfg.Listen = config.Listen{Admin: "0.0.0.0:0"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "admin.token_file: required when listen.admin") {
		t.Errorf("validate a tokenless admin on 0.0.0.0: %v", err)
	}
	if s, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil {
		s.Shutdown(context.Background())
		t.Error("server.Start served a tokenless admin API on 0.0.0.0")
	} else if !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("server.Start: %v, want an error naming admin.token_file", err)
	}
}

// TestHardeningActiveModeTargets: PORT/EPRT used to connect to any port of
// the client's address, the admin API included (an uploaded HTTP request
// replayed to :9100 kicked a session). Privileged ports, upgate's own
// ports and other sessions' passive ports are now refused with 501, as
// is any address but the client's; a legitimate active transfer works.
func TestHardeningActiveModeTargets(t *testing.T) {
	srv, root := startAll(t)
	addr := srv.FTPAddr.String()
	alice := hLogin(t, "127.0.0.1", addr, "alice")
	bob := hLogin(t, "127.0.0.1", addr, "bob")
	bobID := hSession(t, srv, bob.nc).ID
	bobPasv := bob.epsv()

	// The weapon: an HTTP request that kicks bob, uploaded as a file.
	kick := "DELETE /api/sessions/" + bobID + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
	if err := writeFile(filepath.Join(root, "alice", "kick.http"), kick); err != nil {
		t.Fatal(err)
	}
	port := func(a net.Addr) int { return a.(*net.TCPAddr).Port }
	refused := map[string]string{
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", port(srv.AdminAddr)):                            "own listening ports",
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", port(srv.SFTPAddr)):                             "own listening ports",
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", port(srv.FTPAddr)):                              "own listening ports",
		fmt.Sprintf("EPRT |1|127.0.0.1|%d|", bobPasv):                                        "passive data ports",
		fmt.Sprintf("PORT 127,0,0,1,%d,%d", port(srv.AdminAddr)>>8, port(srv.AdminAddr)&255): "own listening ports",
		"PORT 127,0,0,1,0,22":      "below 1024",
		"EPRT |1|127.0.0.1|1023|":  "below 1024",
		"EPRT |1|127.0.0.2|40000|": "security requirements",
		"PORT 10,0,0,1,156,64":     "security requirements",
		"EPRT |2|::1|40000|":       "security requirements",
	}
	for line, why := range refused {
		code, msg := alice.cmd(line)
		if code != 501 || !strings.Contains(msg, why) {
			t.Errorf("%s: %d %s, want 501 (%s)", line, code, msg, why)
		}
		// The transfer has no data connection to go to.
		if code, msg := alice.cmd("RETR kick.http"); code < 400 {
			t.Errorf("RETR after a refused %s: %d %s", line, code, msg)
		}
	}
	bob.expect("NOOP", 200) // not kicked

	// A legitimate active-mode download still works.
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	alice.expect(fmt.Sprintf("EPRT |1|127.0.0.1|%d|", port(cl.Addr())), 200)
	if code, msg := alice.cmd("RETR kick.http"); code != 150 && code != 125 {
		t.Fatalf("active RETR: %d %s", code, msg)
	}
	_ = cl.(*net.TCPListener).SetDeadline(time.Now().Add(hOp))
	dc, err := cl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	if got, err := hReadAll(t, dc); err != nil || string(got) != kick {
		t.Fatalf("active RETR read %q, %v", got, err)
	}
	if code, msg := alice.reply(); code != 226 {
		t.Fatalf("active RETR: %d %s", code, msg)
	}
}

// hSSH logs in over SSH as user with password "pw".
func hSSH(t *testing.T, addr, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("pw")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHardeningSSHChannelCap: 10,000 session channels on one connection
// used to take RSS from 19 MB to 434 MB. Channels past sftp.max_channels
// are now refused with "resource shortage" and a reason; closing one makes
// room; another connection is unaffected.
func TestHardeningSSHChannelCap(t *testing.T) {
	srv, _ := startAll(t)
	addr := srv.SFTPAddr.String()
	c := hSSH(t, addr, "alice")
	var open []ssh.Channel
	var refusal *ssh.OpenChannelError
	for i := 0; i < 200 && refusal == nil; i++ {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			if !errors.As(err, &refusal) {
				t.Fatalf("channel %d: %v", i+1, err)
			}
			break
		}
		go ssh.DiscardRequests(reqs)
		open = append(open, ch)
	}
	if refusal == nil {
		t.Fatalf("%d channels open on one connection, none refused", len(open))
	}
	if want := 16; len(open) != want {
		t.Errorf("%d channels opened before the refusal, want sftp.max_channels' default %d", len(open), want)
	}
	if refusal.Reason != ssh.ResourceShortage || !strings.Contains(refusal.Message, "sftp.max_channels") {
		t.Errorf("refusal %v, want resource shortage naming sftp.max_channels", refusal)
	}
	// Other connections, of alice herself and of bob, are served.
	for _, user := range []string{"alice", "bob"} {
		sc, err := sftp.NewClient(hSSH(t, addr, user))
		if err != nil {
			t.Fatalf("%s's SFTP on another connection: %v", user, err)
		}
		if _, err := sc.Getwd(); err != nil {
			t.Errorf("%s's SFTP: %v", user, err)
		}
		sc.Close()
	}
	// Closing a channel makes room for one.
	open[0].Close()
	var ch ssh.Channel
	waitFor(t, "room for a channel", func() bool {
		var err error
		var reqs <-chan *ssh.Request
		ch, reqs, err = c.OpenChannel("session", nil)
		if err == nil {
			go ssh.DiscardRequests(reqs)
		}
		return err == nil
	})
	ch.Close()
	for _, ch := range open[1:] {
		ch.Close()
	}
}

// TestHardeningSSHHashCommandCap: md5sum with 5,000 file names used to
// make 5,000 agent calls. A command naming more than sftp.exec_max_files
// files is now refused whole, before any agent call.
func TestHardeningSSHHashCommandCap(t *testing.T) {
	srv, root := startAll(t)
	c := hSSH(t, srv.SFTPAddr.String(), "alice")
	if err := writeFile(filepath.Join(root, "alice", "f"), "x"); err != nil {
		t.Fatal(err)
	}
	// agentCalls counts the gateway's calls to agents, less its health
	// calls (method "Status"), which its health loop makes on its own
	// schedule and which one run here saw land during the command.
	agentCalls := func() int {
		n := 0
		resp, err := http.Get("http://" + srv.AdminAddr.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, "upgate_agent_call_seconds_count{") && !strings.Contains(line, `method="Status"`) {
				v, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
				n += v
			}
		}
		return n
	}
	run := func(cmd string) (string, string, error) {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out, errOut bytes.Buffer
		s.Stdout, s.Stderr = &out, &errOut
		err = s.Run(cmd)
		return out.String(), errOut.String(), err
	}
	before := agentCalls()
	cmd := "md5sum" + strings.Repeat(" f", 5000)
	_, stderr, err := run(cmd)
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 2 || !strings.Contains(stderr, "at most 100 files") {
		t.Fatalf("md5sum with 5,000 files: %v, stderr %q; want exit 2 naming the cap", err, stderr)
	}
	if d := agentCalls() - before; d != 0 {
		t.Errorf("the refused command made %d agent calls", d)
	}
	// Within the cap it works.
	out, stderr, err := run("md5sum" + strings.Repeat(" f", 100))
	if err != nil || strings.Count(out, "9dd4e461268c8034f5c8564e155c67a6  f\n") != 100 {
		t.Fatalf("md5sum with 100 files: %v, %q, %q", err, stderr, out)
	}
}

// TestHardeningHostKeysOutsideAgentRoots: the default host keys used to
// live in data/, the embedded agent's root, where a user mounted at root
// "" could read or replace them. Such a configuration is now refused with
// an error naming the key; with the keys beside the root (the new default
// layout, keys/ next to data/), that user cannot reach them.
func TestHardeningHostKeysOutsideAgentRoots(t *testing.T) {
	base := t.TempDir()
	agentRoot := filepath.Join(base, "data")
	cfg := gwtest.Config(t, agentRoot, map[string]string{"alice": "pw"})
	cfg.Users[0].Mounts[0].Root = "" // alice sees the agent's whole tree
	cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
	inside := filepath.Join(agentRoot, "ssh_host_ed25519_key")
	cfg.SFTP.HostKeys = []string{inside}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "config: sftp.host_keys[0]: host key "+strconv.Quote(inside)+" is inside agents.embedded.root") {
		t.Fatalf("host key inside the agent root: %v, want an error naming the key", err)
	}

	key := filepath.Join(base, "keys", "ssh_host_ed25519_key")
	cfg.SFTP.HostKeys = []string{key}
	srv := gwtest.Run(t, cfg)
	pem, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(hSSH(t, srv.SFTPAddr.String(), "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	for _, p := range []string{"/../keys/ssh_host_ed25519_key", "../keys/ssh_host_ed25519_key", "/ssh_host_ed25519_key", "../../" + filepath.Base(base) + "/keys/ssh_host_ed25519_key"} {
		if f, err := sc.Open(p); err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			if bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Fatalf("SECURITY: %s read the host key", p)
			}
		}
		if !strings.Contains(p, "..") {
			continue // her own file of that name would be hers
		}
		if f, err := sc.Create(p); err == nil {
			_, _ = f.Write([]byte(secPayload))
			f.Close()
		}
	}
	if got, err := os.ReadFile(key); err != nil || !bytes.Equal(got, pem) {
		t.Fatalf("SECURITY: the host key changed: %v", err)
	}
	entries, err := sc.ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "ssh_host") {
			t.Errorf("alice's listing shows %s", e.Name())
		}
	}
}

// TestHardeningDemoUserAnyCase: the demo user is refused off loopback
// whatever the case of its name, and so is its password hash under any
// name.
func TestHardeningDemoUserAnyCase(t *testing.T) {
	const demoHash = "$2a$10$0dpFMcElNIdnuOWc24Tu0etZdlvxE/kdYthC5JCobH9zWg1lGE9Z6" // bcrypt("demo"), config.yaml's
	for _, name := range []string{"Demo", "DEMO", "dEmO", "ops"} {
		cfg := gwtest.Config(t, t.TempDir(), map[string]string{})
		cfg.Users = []config.User{{Name: name, PasswordHash: demoHash, Mounts: []config.Mount{{Path: "/", Agent: gwtest.Agent, Root: "demo"}}}}
		cfg.Listen = config.Listen{FTP: "0.0.0.0:0"}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "user "+strconv.Quote(name)+" is for the embedded default only and is refused on non-loopback listener listen.ftp") {
			t.Errorf("user %q with the demo password on 0.0.0.0: %v", name, err)
		}
	}
}

// TestHardeningNoSetuidNoChown: FTP's SITE CHOWN 0:0 then SITE CHMOD
// 40000755 (Go's setuid bit plus 0755, which ftpserverlib passed through)
// made a setuid-root copy of a program when the agent runs as root, and
// SITE CHMOD 4755 answered 200 while dropping the bit silently; SITE CHOWN
// with a name chowned to uid 0. Now both protocols set permissions and the
// sticky bit only, say so, and never change an owner; the agent itself
// refuses setuid, setgid and chown whatever a gateway asks (its own tests
// call it directly).
func TestHardeningNoSetuidNoChown(t *testing.T) {
	srv, root := startAll(t)
	prog := filepath.Join(root, "alice", "id")
	// An executable owned by someone else, as an attacker's upload would
	// be after a chown.
	if err := os.MkdirAll(filepath.Dir(prog), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nid\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(prog, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	c := hLogin(t, "127.0.0.1", srv.FTPAddr.String(), "alice")
	for line, want := range map[string]int{
		"SITE CHOWN 0:0 id":       550,
		"SITE CHOWN www-data id":  550,
		"SITE CHMOD 40000755 id":  501,
		"SITE CHMOD 99 id":        501,
		"SITE CHMOD 4755 id":      200,
		"SITE CHMOD 2775 id":      200,
		"SITE CHMOD 1777 id":      200,
		"SITE CHMOD 755":          501,
		"SITE CHMOD 0644 missing": 550,
	} {
		if code, msg := c.cmd(line); code != want {
			t.Errorf("%s: %d %s, want %d", line, code, msg, want)
		} else if want == 200 && strings.Contains(line, "4755") && !strings.Contains(msg, "setuid") {
			t.Errorf("%s: %q does not say the setuid bit was dropped", line, msg)
		}
	}
	check := func(who string) {
		t.Helper()
		fi, err := os.Stat(prog)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || st.Uid != 1234 || st.Gid != 1234 {
			t.Errorf("after %s: mode %v owner %d:%d, want no setuid/setgid and 1234:1234", who, fi.Mode(), st.Uid, st.Gid)
		}
	}
	check("FTP")

	// SFTP: SETSTAT with setuid and an owner: the bits and the owner are
	// dropped, the permissions applied.
	sc, err := sftp.NewClient(hSSH(t, srv.SFTPAddr.String(), "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Chmod("/id", os.ModeSetuid|os.ModeSetgid|0o750); err != nil {
		t.Fatalf("SFTP chmod 06750: %v", err)
	}
	if err := sc.Chown("/id", 0, 0); err != nil {
		t.Logf("SFTP chown: %v", err)
	}
	check("SFTP")
	if fi, _ := os.Stat(prog); fi.Mode().Perm() != 0o750 {
		t.Errorf("SFTP chmod 06750 left %v, want 0750", fi.Mode())
	}
}

// TestHardeningErrorsHideAgentPaths (issue 14, item 12): the agent's own
// error texts name its paths ("alice/chain"), which say where a user's
// tree lives inside the agent; what a client is shown names its own
// paths ("/chain") instead. Provoked through both protocols with
// requests the agent refuses in its own words.
func TestHardeningErrorsHideAgentPaths(t *testing.T) {
	srv, root := startAll(t)
	if err := os.MkdirAll(filepath.Join(root, "alice", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(root, "alice", "sub", "up")); err != nil {
		t.Fatal(err)
	}
	sc, err := sftp.NewClient(hSSH(t, srv.SFTPAddr.String(), "alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	// A link that leads out of alice's tree through an existing link.
	err = sc.Symlink("sub/up/../bob", "/chain")
	if err == nil {
		t.Fatal("SFTP: a symlink leading out of the user's root through sub/up was made")
	}
	if msg := err.Error(); strings.Contains(msg, "alice/") {
		t.Errorf("SFTP symlink refusal %q names the agent's path", msg)
	}
	if _, err := os.Lstat(filepath.Join(root, "alice", "chain")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused link exists: %v", err)
	}

	c := hLogin(t, "127.0.0.1", srv.FTPAddr.String(), "alice")
	code, msg := c.cmd("MKD bad\x01name")
	t.Logf("MKD with a control character: %d %s", code, msg)
	if code/100 != 5 {
		t.Errorf("MKD with a control character: %d %s, want a 5xx refusal", code, msg)
	}
	if strings.Contains(msg, "alice") {
		t.Errorf("FTP refusal %q names the agent's path", msg)
	}
	// A rename names two paths; the agent refuses the second.
	if err := os.WriteFile(filepath.Join(root, "alice", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.expect("RNFR f", 350)
	code, msg = c.cmd("RNTO bad\x01name")
	t.Logf("RNTO with a control character: %d %s", code, msg)
	if code/100 != 5 || strings.Contains(msg, "alice") {
		t.Errorf("RNTO with a control character: %d %s, want a 5xx refusal that does not name the agent's path", code, msg)
	}
	// ftpserverlib resolves SITE SYMLINK's target as a path of the
	// session ("/bob"), which the gateway stores relative to the link:
	// the link stays inside alice's tree.
	if code, msg = c.cmd("SITE SYMLINK sub/up/../bob chain2"); code != 200 {
		t.Errorf("SITE SYMLINK: %d %s", code, msg)
	}
	if target, err := os.Readlink(filepath.Join(root, "alice", "chain2")); err != nil || target != "sub/bob" {
		t.Errorf("SITE SYMLINK made %q (%v), want a link to sub/bob beside it", target, err)
	}
}
