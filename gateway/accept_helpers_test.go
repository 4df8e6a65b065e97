package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
)

// The accept-layer tests serve a tiny line protocol through the gateway's
// listeners, over real loopback sockets:
//
//	server: "220 hello" on connect
//	PING            -> "200 PONG"
//	LOGIN user pw   -> "230 ok" | "530 <error>"
//	HOLD [name]     -> opens name for writing (a transfer in progress) -> "150 holding"
//	DONE            -> writes the rest, closes (commits) the file -> "226 done"
//	QUIT            -> "221 bye", then the server closes
//
// A refusal by the accept layer is "421 <reason>".

const (
	holdPart1 = "first half of the upload\n"
	holdPart2 = "second half of the upload\n"
	// hang bounds every wait that only a hang would exceed.
	hang = 10 * time.Second
)

// testProto is the line protocol as the accept layer sees it.
func testProto() gateway.Protocol {
	return gateway.Protocol{
		Name:           "test",
		ReadIsActivity: true,
		Refuse: func(c net.Conn, reason string) {
			_, _ = io.WriteString(c, "421 "+reason+"\r\n")
		},
	}
}

// newAcceptGateway builds a gateway with one embedded agent (root: the
// returned directory) and users alice and bob (passwords "alice-pw",
// "bob-pw") whose files land under root/u and root/b. edit adjusts the
// connections config before validation.
func newAcceptGateway(t *testing.T, edit func(*config.Connections)) (*gateway.Gateway, string) {
	t.Helper()
	root := t.TempDir()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: root}}
	cfg.Users = []config.User{
		{Name: "alice", PasswordHash: hash(t, "alice-pw"), Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: "u"}}},
		{Name: "bob", PasswordHash: hash(t, "bob-pw"), Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: "b"}}},
	}
	if edit != nil {
		edit(&cfg.Connections)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := gw.Close(); err != nil {
			t.Error(err)
		}
	})
	return gw, root
}

// lineServer serves the line protocol on a listener. Every goroutine it
// starts is waited for by stop, which t.Cleanup calls.
type lineServer struct {
	gw  *gateway.Gateway
	lis net.Listener

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	once  sync.Once
}

// serveLine listens through the gateway on 127.0.0.1:0 and serves the line
// protocol there.
func serveLine(t *testing.T, gw *gateway.Gateway) *lineServer {
	t.Helper()
	lis, err := gw.Listen(testProto(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{gw: gw, lis: lis, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

func (s *lineServer) addr() string { return s.lis.Addr().String() }

func (s *lineServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			handleLine(s.gw, c)
		}()
	}
}

// stop closes the listener and every connection, and waits for the
// server's goroutines.
func (s *lineServer) stop() {
	s.once.Do(func() {
		_ = s.lis.Close()
	})
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// handleLine serves one connection until QUIT or an error. An upload still
// open when the connection ends is aborted, never committed.
func handleLine(gw *gateway.Gateway, c net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer c.Close()
	var (
		login *gateway.Login
		held  afero.File
	)
	abort := func(err error) {
		if held == nil {
			return
		}
		if a, ok := held.(interface{ TransferError(error) }); ok {
			a.TransferError(err)
		}
		_ = held.Close()
		held = nil
	}
	reply := func(line string) bool {
		_, err := io.WriteString(c, line+"\r\n")
		return err == nil
	}
	if !reply("220 hello") {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			abort(err)
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		ok := true
		switch f[0] {
		case "PING":
			ok = reply("200 PONG")
		case "LOGIN":
			if len(f) != 3 {
				ok = reply("501 LOGIN user pw")
				break
			}
			sess := c.(*gateway.Conn).Session()
			l, err := gw.LoginPassword(ctx, sess, f[1], f[2])
			if err != nil {
				ok = reply("530 " + err.Error())
				break
			}
			login = l
			ok = reply("230 ok")
		case "HOLD":
			name := "held.txt"
			if len(f) > 1 {
				name = f[1]
			}
			if login == nil || held != nil {
				ok = reply("503 log in first, one HOLD at a time")
				break
			}
			fh, err := login.Fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				ok = reply("550 " + err.Error())
				break
			}
			held = fh
			if _, err := io.WriteString(fh, holdPart1); err != nil {
				abort(err)
				ok = reply("550 " + err.Error())
				break
			}
			ok = reply("150 holding")
		case "DONE":
			if held == nil {
				ok = reply("503 nothing held")
				break
			}
			fh := held
			held = nil
			_, werr := io.WriteString(fh, holdPart2)
			if werr != nil {
				if a, ok := fh.(interface{ TransferError(error) }); ok {
					a.TransferError(werr)
				}
			}
			if err := errors.Join(werr, fh.Close()); err != nil {
				ok = reply("550 " + err.Error())
				break
			}
			ok = reply("226 done")
		case "QUIT":
			abort(io.ErrUnexpectedEOF)
			reply("221 bye")
			return
		default:
			ok = reply("500 unknown command")
		}
		if !ok {
			abort(io.ErrUnexpectedEOF)
			return
		}
	}
}

// client is the test's end of a line-protocol connection.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialLine connects from 127.0.0.1 without reading the greeting.
func dialLine(t *testing.T, addr string) *client {
	t.Helper()
	return dialLineFrom(t, "", addr)
}

// dialLineFrom connects from the loopback address from ("" for the
// default) without reading the greeting.
func dialLineFrom(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: hang}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// greeted connects and reads the greeting.
func greeted(t *testing.T, addr string) *client {
	t.Helper()
	cl := dialLine(t, addr)
	cl.expect("220 hello")
	return cl
}

// readLine reads one reply line (without CRLF) within the hang bound.
func (cl *client) readLine() (string, error) {
	_ = cl.c.SetReadDeadline(time.Now().Add(hang))
	line, err := cl.r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// expect reads one line and fails unless it is want.
func (cl *client) expect(want string) {
	cl.t.Helper()
	got, err := cl.readLine()
	if err != nil || got != want {
		cl.t.Fatalf("reply %q, %v; want %q", got, err, want)
	}
}

// send writes a command.
func (cl *client) send(cmd string) {
	cl.t.Helper()
	_ = cl.c.SetWriteDeadline(time.Now().Add(hang))
	if _, err := io.WriteString(cl.c, cmd+"\r\n"); err != nil {
		cl.t.Fatalf("send %q: %v", cmd, err)
	}
}

// cmd sends a command and returns the reply line.
func (cl *client) cmd(cmd string) string {
	cl.t.Helper()
	cl.send(cmd)
	got, err := cl.readLine()
	if err != nil {
		cl.t.Fatalf("%s: reply %q, %v", cmd, got, err)
	}
	return got
}

// ping fails unless PING gets PONG.
func (cl *client) ping() {
	cl.t.Helper()
	if got := cl.cmd("PING"); got != "200 PONG" {
		cl.t.Fatalf("PING: %q", got)
	}
}

// quit sends QUIT and waits for the server to close.
func (cl *client) quit() {
	cl.t.Helper()
	if got := cl.cmd("QUIT"); got != "221 bye" {
		cl.t.Fatalf("QUIT: %q", got)
	}
	cl.expectClosed(hang)
}

// expectClosed reads until the server closes the connection (EOF or a
// reset) and fails if it stays open for within. It returns the lines
// read before.
func (cl *client) expectClosed(within time.Duration) []string {
	cl.t.Helper()
	_ = cl.c.SetReadDeadline(time.Now().Add(within))
	var lines []string
	for {
		line, err := cl.r.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimRight(line, "\r\n"))
		}
		if err == nil {
			continue
		}
		if !isClosed(err) {
			cl.t.Fatalf("connection not closed by the server within %v (read %q): %v", within, lines, err)
		}
		return lines
	}
}

// isClosed reports whether a read error means the peer closed the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// sessionOf returns the gateway's session for the client's connection.
func sessionOf(t *testing.T, gw *gateway.Gateway, cl *client) *gateway.Session {
	t.Helper()
	// The server's view: remote is our local address.
	s, ok := gw.Registry().Lookup(cl.c.RemoteAddr(), cl.c.LocalAddr())
	if !ok {
		t.Fatalf("no session for %v -> %v", cl.c.LocalAddr(), cl.c.RemoteAddr())
	}
	return s
}

// closeLog records why sessions ended, through Registry.OnClose.
type closeLog struct {
	mu      sync.Mutex
	reasons map[string]string // session ID -> reason
	remotes []string
}

func watchCloses(gw *gateway.Gateway) *closeLog {
	l := &closeLog{reasons: make(map[string]string)}
	gw.Registry().OnClose(func(s *gateway.Session) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.reasons[s.ID] = s.CloseReason()
		l.remotes = append(l.remotes, s.Remote.String())
	})
	return l
}

// reason returns the close reason of session id and whether it closed.
func (l *closeLog) reason(id string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.reasons[id]
	return r, ok
}

// waitReason waits until session id has closed and returns its reason.
func (l *closeLog) waitReason(t *testing.T, id string) string {
	t.Helper()
	var r string
	waitFor(t, hang, "session "+id+" to close", func() bool {
		var ok bool
		r, ok = l.reason(id)
		return ok
	})
	return r
}

// waitFor polls cond until it holds, failing after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
