package sftp

// The SSH frontend's timers under testing/synctest, on an in-memory
// network (internal/memnet): the keepalive that finds a client gone
// behind a relay, and the handshake timeout. Every duration asserted is
// the bubble's fake clock, exact.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/memnet"
)

// testSigner is a fixed ed25519 host key.
func testSigner(t *testing.T) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeepaliveSynctest: a client that answers keepalive@openssh.com is
// asked every interval for an hour and kept; once its cable is pulled
// (nothing answers, nothing closes), the connection is declared dead
// after max_missed unanswered requests: 70 s after the cut here, the
// request sent 10 s after it and the two after that gone unanswered, the
// third miss counted at the fourth tick.
func TestKeepaliveSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memnet.Listen("127.0.0.1:2222")
		clientEnd, serverEnd := memnet.Pipe(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}, l.Addr())
		defer clientEnd.Close()

		conf := &ssh.ServerConfig{NoClientAuth: true}
		conf.AddHostKey(testSigner(t))
		accepted := make(chan *ssh.ServerConn, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			c, chans, reqs, err := ssh.NewServerConn(serverEnd, conf)
			accepted <- c
			if err != nil {
				t.Error(err)
				return
			}
			wg.Go(func() { ssh.DiscardRequests(reqs) })
			wg.Go(func() {
				for nc := range chans {
					nc.Reject(ssh.Prohibited, "no channels")
				}
			})
		})
		cconn, _, creqs, err := ssh.NewClientConn(clientEnd, "127.0.0.1:2222", &ssh.ClientConfig{User: "alice", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
		if err != nil {
			t.Fatal(err)
		}
		defer cconn.Close()
		var asked atomic.Int32
		wg.Go(func() {
			for req := range creqs { // the client: OpenSSH answers "failure", alive
				if req.Type == "keepalive@openssh.com" {
					asked.Add(1)
				}
				req.Reply(false, nil)
			}
		})
		sconn := <-accepted
		if sconn == nil {
			t.Fatal("no server connection")
		}

		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		var deadAt atomic.Int64 // since start; 0 while alive
		var missed atomic.Int32
		wg.Go(func() {
			keepalive(ctx, sconn, 20*time.Second, 3, func(n int) {
				deadAt.Store(int64(time.Since(start)))
				missed.Store(int32(n))
				sconn.Close()
			})
		})
		time.Sleep(time.Hour + 10*time.Second)
		if n := asked.Load(); n != 180 {
			t.Errorf("an hour at 20 s: %d keepalives asked, want 180", n)
		}
		if d := deadAt.Load(); d != 0 {
			t.Fatalf("a client that answers was declared dead after %v", time.Duration(d))
		}

		clientEnd.Cut()
		time.Sleep(70*time.Second - time.Nanosecond)
		synctest.Wait()
		if d := deadAt.Load(); d != 0 {
			t.Fatalf("declared dead %v after the cut, before the third miss", time.Duration(d)-time.Hour-10*time.Second)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got, want := time.Duration(deadAt.Load()), time.Hour+80*time.Second; got != want || missed.Load() != 3 {
			t.Errorf("declared dead at %v with %d missed, want %v (the cut at 1h0m10s, plus 70s) with 3", got, missed.Load(), want)
		}
		cancel()
		cconn.Close()
		wg.Wait()
	})
}

// TestHandshakeTimeoutSynctest: a connection that never starts its SSH
// handshake gets the server's version line and is closed when
// sftp.handshake_timeout has passed, not a nanosecond before; the server
// then stops with every goroutine it started ended.
func TestHandshakeTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gw, err := gateway.New(context.Background(), &config.Config{}, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer gw.Close()
		srv, err := New(gw, Config{HostKeys: []ssh.Signer{testSigner(t)}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		l := memnet.Listen("127.0.0.1:2222")
		served := make(chan error, 1)
		go func() { served <- srv.Serve(gw.NewListener(Protocol(), l)) }()

		start := time.Now()
		client, err := l.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		r := bufio.NewReader(client)
		version, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(version, "SSH-2.0-OpenSSH_9.2_upgate") {
			t.Fatalf("server version %q, %v", version, err)
		}
		time.Sleep(30*time.Second - time.Nanosecond)
		synctest.Wait()
		if gw.Registry().Len() != 1 {
			t.Fatalf("%d sessions before the handshake timeout, want 1", gw.Registry().Len())
		}
		if _, err := io.Copy(io.Discard, r); err != nil { // the server's KEXINIT, then EOF
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 30*time.Second {
			t.Errorf("closed after %v, want the 30 s handshake timeout", waited)
		}
		synctest.Wait()
		if n := gw.Registry().Len(); n != 0 {
			t.Errorf("%d sessions after the handshake timeout", n)
		}

		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}
