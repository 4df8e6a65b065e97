package memnet_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/upgate/upgate/internal/memnet"
)

func TestConn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := memnet.Listen("127.0.0.1:2121")
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				t.Error(err)
			}
			accepted <- c
		}()
		client, err := l.DialFrom(context.Background(), netip.MustParseAddr("192.0.2.7"))
		if err != nil {
			t.Fatal(err)
		}
		server := <-accepted
		if got := server.RemoteAddr().String(); got != "192.0.2.7:40000" {
			t.Errorf("server sees the client at %s", got)
		}
		if got := client.RemoteAddr().String(); got != "127.0.0.1:2121" {
			t.Errorf("client sees the server at %s", got)
		}

		// Both sides write first, as SSH does: nobody waits for a reader.
		if _, err := client.Write([]byte("SSH-2.0-client\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Write([]byte("SSH-2.0-server\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if n, err := server.Read(buf); err != nil || string(buf[:n]) != "SSH-2.0-client\r\n" {
			t.Fatalf("server read %q, %v", buf[:n], err)
		}

		// A deadline passes at its time on the bubble's clock.
		start := time.Now()
		server.SetReadDeadline(start.Add(30 * time.Second))
		if _, err := server.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v", err)
		}
		if waited := time.Since(start); waited != 30*time.Second {
			t.Errorf("the deadline passed after %v, want 30s", waited)
		}
		server.SetReadDeadline(time.Time{})

		// A pulled cable: writes vanish and nothing more is read.
		client.Cut()
		if _, err := server.Write([]byte("lost")); err != nil {
			t.Fatalf("write after Cut: %v", err)
		}
		client.SetReadDeadline(time.Now().Add(time.Minute))
		if n, err := client.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after Cut: %q, %v", buf[:n], err)
		}
		client.Close()
		server.Close()

		// Close: the peer reads EOF after what was written.
		a, b := memnet.Pipe(l.Addr(), l.Addr())
		a.Write([]byte("bye"))
		a.Close()
		if got, err := io.ReadAll(b); err != nil || string(got) != "bye" {
			t.Errorf("after close: %q, %v", got, err)
		}
		b.Close()
		l.Close()
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	})
}
