package ftp_test

// The FTP frontend's timers under testing/synctest: the frontend and a
// gateway without agents run in a bubble on an in-memory network
// (internal/memnet), so every duration asserted is the bubble's fake
// clock, exact. The bubble also checks goroutine ownership: it fails if
// Serve leaves a client goroutine behind.

import (
	"context"
	"log/slog"
	"net/textproto"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/frontends/ftp"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/memnet"
)

// bubbleFTP serves FTP with cfg in the current bubble; stop ends it and
// returns once Serve has returned.
func bubbleFTP(t *testing.T, gwCfg *config.Config, cfg ftp.Config) (l *memnet.Listener, gw *gateway.Gateway, stop func()) {
	t.Helper()
	gw, err := gateway.New(context.Background(), gwCfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := ftp.New(gw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l = memnet.Listen("127.0.0.1:2121")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(gw.NewListener(ftp.Protocol(), l)) }()
	return l, gw, func() {
		gw.Shutdown(context.Background())
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		gw.Close()
	}
}

// dialFTP connects and reads the greeting.
func dialFTP(t *testing.T, l *memnet.Listener) *textproto.Conn {
	t.Helper()
	c, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestLoginTimeoutSynctest: a control connection that does not log in is
// told 421 and closed ftp.login_timeout after it arrived, NOOPs or not.
func TestLoginTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := bubbleFTP(t, &config.Config{}, ftp.Config{}) // login_timeout: the default, 30s
		defer stop()
		start := time.Now()
		tp := dialFTP(t, l)
		defer tp.Close()
		for range 2 {
			time.Sleep(10 * time.Second)
			if _, err := tp.Cmd("NOOP"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := tp.ReadResponse(200); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := tp.ReadResponse(421)
		if err != nil || !strings.Contains(msg, "Login timeout (30s)") {
			t.Fatalf("after the NOOPs: %q, %v; want 421 Login timeout", msg, err)
		}
		if waited := time.Since(start); waited != 30*time.Second {
			t.Errorf("421 after %v, want 30s", waited)
		}
		if _, err := tp.ReadLine(); err == nil {
			t.Error("the connection stays open after the 421")
		}
	})
}

// TestIdleTimeoutSynctest: with no login bound, a control connection
// silent for connections.idle_timeout is closed by the gateway then,
// each command (NOOP included) starting the hour again.
func TestIdleTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _, stop := bubbleFTP(t, &config.Config{}, ftp.Config{LoginTimeout: -1}) // idle_timeout: the default, 1h
		defer stop()
		start := time.Now()
		tp := dialFTP(t, l)
		defer tp.Close()
		time.Sleep(59 * time.Minute)
		if _, err := tp.Cmd("NOOP"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tp.ReadResponse(200); err != nil {
			t.Fatal(err)
		}
		if _, err := tp.ReadLine(); err == nil {
			t.Fatal("a line after the NOOP's reply")
		}
		if waited := time.Since(start); waited != 59*time.Minute+time.Hour {
			t.Errorf("closed after %v, want 1h59m (the NOOP at 59m, plus an hour)", waited)
		}
	})
}
