package gateway

// The accept layer's timers under testing/synctest: the gateway runs in a
// bubble on an in-memory network (internal/memnet), so its clock is the
// bubble's fake one and every figure asserted here is exact.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/memnet"
)

// bubbleGateway starts a gateway with no agents on cfg in the current
// bubble, and records each session's end. It is closed when the bubble's
// function returns.
func bubbleGateway(t *testing.T, cfg *config.Config) (*Gateway, *closes) {
	t.Helper()
	g, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	cl := &closes{at: make(map[string]time.Time), reason: make(map[string]string)}
	g.registry.OnClose(func(s *Session) {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		cl.at[s.ID], cl.reason[s.ID] = g.now(), s.CloseReason()
	})
	return g, cl
}

// closes records when and why sessions ended, by session ID.
type closes struct {
	mu     sync.Mutex
	at     map[string]time.Time
	reason map[string]string
}

func (c *closes) get(id string) (time.Time, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.at[id]
	return at, c.reason[id], ok
}

// dialAccepted dials l from ip and returns the client's end and the
// connection the accept layer's listener gl delivered.
func dialAccepted(t *testing.T, l *memnet.Listener, gl net.Listener, ip string) (*memnet.Conn, *Conn) {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := gl.Accept()
		got <- result{c, err}
	}()
	client, err := l.DialFrom(context.Background(), netip.MustParseAddr(ip))
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	return client, r.c.(*Conn)
}

// TestIdleTimeoutSynctest: a session silent for connections.idle_timeout
// is closed at that instant; a byte from the client starts the hour
// again; a transfer in progress is never idle, and once it ends the next
// check closes the session.
func TestIdleTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, cl := bubbleGateway(t, &config.Config{}) // idle_timeout: the default, 1h
		l := memnet.Listen("127.0.0.1:2121")
		gl := g.NewListener(Protocol{Name: "test", ReadIsActivity: true}, l)
		defer gl.Close()
		start := time.Now()

		client, c := dialAccepted(t, l, gl, "192.0.2.1")
		defer client.Close()
		sess := c.Session()
		time.Sleep(59 * time.Minute)
		if _, err := client.Write([]byte("NOOP\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil { // the frontend reads the command
			t.Fatal(err)
		}
		time.Sleep(time.Hour - time.Nanosecond)
		synctest.Wait()
		if _, _, closed := cl.get(sess.ID); closed {
			t.Fatal("closed before an hour of silence")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		at, reason, closed := cl.get(sess.ID)
		if !closed || reason != ReasonIdle {
			t.Fatalf("after an hour of silence: closed %v, reason %q", closed, reason)
		}
		if got, want := at.Sub(start), 59*time.Minute+time.Hour; got != want {
			t.Errorf("closed %v after the connection, want %v (the last command, plus an hour)", got, want)
		}
		if _, err := client.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("the client reads %v after the idle close, want EOF", err)
		}

		// A transfer in progress keeps a silent session.
		start = time.Now()
		client2, c2 := dialAccepted(t, l, gl, "192.0.2.1")
		defer client2.Close()
		sess2 := c2.Session()
		time.Sleep(30 * time.Minute)
		end := sess2.BeginTransfer()
		time.Sleep(2 * time.Hour) // the checks at 1h and 2h re-arm
		if _, _, closed := cl.get(sess2.ID); closed {
			t.Fatal("closed during a transfer")
		}
		end() // at 2h30m: the check at 3h finds 3h of silence
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		at, reason, closed = cl.get(sess2.ID)
		if !closed || reason != ReasonIdle || at.Sub(start) != 3*time.Hour {
			t.Errorf("after the transfer: closed %v at %v, reason %q; want idle at 3h", closed, at.Sub(start), reason)
		}
	})
}

// TestProgressTimeoutSynctest: a data connection that moves no byte for
// connections.progress_timeout is closed then, while one that keeps
// moving stays; a passive port no transfer asked for is released after
// DataOptions.UnusedTimeout.
func TestProgressTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, cl := bubbleGateway(t, &config.Config{}) // progress_timeout: the default, 2m
		l := memnet.Listen("127.0.0.1:2121")
		gl := g.NewListener(Protocol{Name: "test", ReadIsActivity: true}, l)
		defer gl.Close()
		client, c := dialAccepted(t, l, gl, "192.0.2.1")
		defer client.Close()
		parent := c.Session()
		if err := g.registry.setUser(parent, "alice"); err != nil {
			t.Fatal(err)
		}

		pasv := memnet.Listen("127.0.0.1:30000")
		dl := g.NewDataListener(Protocol{Name: "test-data"}, pasv, parent, DataOptions{UnusedTimeout: 15 * time.Second})
		defer dl.Close()
		dataClient, d := dialAccepted(t, pasv, dl, "192.0.2.1")
		defer dataClient.Close()
		if d.Session().Parent != parent {
			t.Fatal("the data connection is not a child of its control session")
		}
		start := time.Now()
		buf := make([]byte, 64)
		for range 5 { // a slow upload: a byte a minute
			time.Sleep(time.Minute)
			dataClient.Write([]byte("x"))
			if _, err := d.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2*time.Minute - time.Nanosecond)
		synctest.Wait()
		if _, _, closed := cl.get(d.Session().ID); closed {
			t.Fatal("closed before two minutes without a byte")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		at, reason, closed := cl.get(d.Session().ID)
		if !closed || reason != ReasonProgress || at.Sub(start) != 7*time.Minute {
			t.Errorf("stalled transfer: closed %v after %v, reason %q; want %q after 7m (the last byte at 5m, plus 2m)", closed, at.Sub(start), reason, ReasonProgress)
		}
		if _, _, closed := cl.get(parent.ID); closed {
			t.Error("the control session ended with its stalled data connection")
		}

		// A passive port nobody asked a connection of is released.
		start = time.Now()
		pasv2 := memnet.Listen("127.0.0.1:30001")
		dl2 := g.NewDataListener(Protocol{Name: "test-data"}, pasv2, parent, DataOptions{UnusedTimeout: 15 * time.Second})
		defer dl2.Close()
		time.Sleep(15*time.Second - time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond/2)
		if _, err := pasv2.Dial(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the port before its 15 s: dial %v, want it open (no one accepting)", err)
		}
		cancel()
		time.Sleep(time.Millisecond / 2)
		if _, err := pasv2.Dial(context.Background()); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the port after %v: dial %v, want it closed", time.Since(start), err)
		}
		if _, err := dl2.Accept(); !errors.Is(err, ErrDataListenerUnused) {
			t.Errorf("Accept on the released port: %v, want ErrDataListenerUnused", err)
		}
	})
}

// TestDefenderSynctest: max_failures failed logins within the window ban
// an address for ban_time, to the nanosecond; the accept layer refuses it
// meanwhile with the protocol's refusal; failures older than the window
// do not count.
func TestDefenderSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := bubbleGateway(t, &config.Config{Defender: config.Defender{Enabled: true}}) // 10 in 1m, banned 15m
		l := memnet.Listen("127.0.0.1:2121")
		refusals := make(chan string, 4)
		gl := g.NewListener(Protocol{Name: "test", Refuse: func(c net.Conn, reason string) {
			refusals <- reason
			io.WriteString(c, "421 "+reason+"\r\n")
		}}, l)
		defer gl.Close()
		ip, other := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("192.0.2.8")

		// Nine failures, a minute's pause: they expire, and nine more
		// do not ban.
		for range 9 {
			g.defender.LoginFailed(ip, "bob")
			time.Sleep(time.Second)
		}
		time.Sleep(time.Minute)
		for range 9 {
			g.defender.LoginFailed(ip, "bob")
		}
		if g.defender.Banned(ip) {
			t.Fatal("banned for failures spread over more than the window")
		}
		g.defender.LoginFailed(ip, "carol") // the tenth within the window
		bannedAt := time.Now()
		if !g.defender.Banned(ip) || g.defender.Banned(other) {
			t.Fatalf("after ten failures: banned %v, another address %v", g.defender.Banned(ip), g.defender.Banned(other))
		}

		// The accept layer refuses the banned address with the protocol's
		// words, and admits another.
		client, err := l.DialFrom(context.Background(), ip)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(client).ReadString('\n')
		client.Close()
		if !strings.HasPrefix(line, "421 ") || !strings.Contains(line, "banned") {
			t.Errorf("the banned address reads %q, want a 421 saying it is banned", line)
		}
		if got := <-refusals; !strings.Contains(got, ip.String()) {
			t.Errorf("refusal %q does not name the address", got)
		}
		okClient, okConn := dialAccepted(t, l, gl, other.String())
		okClient.Close()
		okConn.Close()

		time.Sleep(15*time.Minute - time.Since(bannedAt))
		if !g.defender.Banned(ip) {
			t.Fatal("the ban ended before 15 minutes")
		}
		time.Sleep(time.Nanosecond)
		if g.defender.Banned(ip) {
			t.Fatalf("still banned %v after the ban began", time.Since(bannedAt))
		}
		client, c := dialAccepted(t, l, gl, ip.String())
		client.Close()
		c.Close()
	})
}
