package sftp

// A filesystem that panics in the methods pkg/sftp runs on its own worker
// goroutines (WriteAt, ReadAt, Close, Stat, the abort of a file left open)
// costs the client one failed request, never the process: the handler
// recovers, logs the stack and answers SFTP FAILURE.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/spf13/afero"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/memnet"
	"github.com/upgate/upgate/internal/syncbuf"
)

// panicFs is afero's in-memory filesystem, except that a file whose name
// holds "panic-<op>" panics in op (write, read, close, abort), and Stat
// of such a name panics for "panic-stat": a stand-in for a bug in a
// filesystem layer.
type panicFs struct{ afero.Fs }

func (p panicFs) Open(name string) (afero.File, error) { return p.OpenFile(name, os.O_RDONLY, 0) }

func (p panicFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := p.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return panicFile{f}, nil
}

func (p panicFs) Stat(name string) (os.FileInfo, error) {
	trap(name, "stat")
	return p.Fs.Stat(name)
}

type panicFile struct{ afero.File }

func trap(name, op string) {
	if strings.Contains(name, "panic-"+op) {
		panic("trap: " + op + " " + name)
	}
}

func (f panicFile) WriteAt(p []byte, off int64) (int, error) {
	trap(f.Name(), "write")
	return f.File.WriteAt(p, off)
}

func (f panicFile) ReadAt(p []byte, off int64) (int, error) {
	trap(f.Name(), "read")
	return f.File.ReadAt(p, off)
}

func (f panicFile) Close() error {
	trap(f.Name(), "close")
	return f.File.Close()
}

// TransferError is what backend files implement: the session ended with
// the file open.
func (f panicFile) TransferError(error) { trap(f.Name(), "abort") }

// gatewaySession returns a session registered by a real gateway (no
// agents) whose log goes to logs.
func gatewaySession(t *testing.T, logs io.Writer) *gateway.Session {
	t.Helper()
	gw, err := gateway.New(context.Background(), &config.Config{}, gateway.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	l := memnet.Listen("127.0.0.1:2222")
	gl := gw.NewListener(Protocol(), l)
	t.Cleanup(func() { gl.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := gl.Accept()
		accepted <- c
	}()
	client, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c := <-accepted
	t.Cleanup(func() { c.Close() })
	return c.(*gateway.Conn).Session()
}

func TestHandlerPanicsAreFailures(t *testing.T) {
	var logs syncbuf.Buffer
	sess := gatewaySession(t, &logs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mem := afero.NewMemMapFs()
	for _, name := range []string{"/panic-read", "/panic-close-on-read", "/ok"} {
		if err := afero.WriteFile(mem, name, []byte("content"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandler(ctx, panicFs{mem}, sess)

	l := memnet.Listen("127.0.0.1:2222")
	clientEnd, serverEnd := memnet.Pipe(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, l.Addr())
	rs := sftp.NewRequestServer(serverEnd, h.handlers())
	served := make(chan error, 1)
	go func() { served <- rs.Serve() }()
	client, err := sftp.NewClientPipe(clientEnd, clientEnd)
	if err != nil {
		t.Fatal(err)
	}

	// Each trap fails its request with a FAILURE naming the operation.
	failure := func(what string, err error, op string) {
		t.Helper()
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure || !strings.Contains(err.Error(), "internal error during "+op) {
			t.Errorf("%s: %v, want FAILURE \"internal error during %s\"", what, err, op)
		}
	}
	f, err := client.Create("/panic-write")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte("x"))
	failure("write", err, "write")
	f.Close()

	f, err = client.Open("/panic-read")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(f)
	failure("read", err, "read")
	f.Close()

	f, err = client.Create("/panic-close")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	failure("close", f.Close(), "close")

	_, err = client.Stat("/panic-stat")
	failure("stat", err, "Stat")

	// The session goes on.
	if err := client.Mkdir("/dir"); err != nil {
		t.Fatalf("mkdir after the panics: %v", err)
	}
	f, err = client.Open("/ok")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != "content" {
		t.Errorf("read after the panics: %q, %v", b, err)
	}
	f.Close()

	// A file left open when the connection drops is aborted: the abort
	// panics, and Serve still returns.
	f, err = client.Create("/panic-abort")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	clientEnd.Close()
	select {
	case err := <-served:
		if err == nil || errors.Is(err, io.EOF) {
			t.Logf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the connection dropped")
	}
	client.Close()
	rs.Close()

	lines := strings.Split(logs.String(), "\n")
	for _, op := range []string{"write", "read", "close", "Stat", "abort"} {
		i := slices.IndexFunc(lines, func(l string) bool {
			return strings.Contains(l, `msg="panic in SFTP handler"`) && strings.Contains(l, ` op=`+op+` panic="trap: `)
		})
		if i < 0 {
			t.Errorf("no panic log line for %s", op)
		} else if !strings.Contains(lines[i], `stack="goroutine `) || !strings.Contains(lines[i], "sftp.trap(") {
			t.Errorf("the log line of the %s panic has no stack through the trap: %.300s", op, lines[i])
		}
	}
}
