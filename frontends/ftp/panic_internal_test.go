package ftp

// A filesystem that panics costs the FTP client one failed command, never
// the process: every callback ftpserverlib runs defers recovered, which
// logs the stack and returns an error that becomes the command's reply.
// The driver's callbacks are called here as ftpserverlib calls them, on a
// session registered by a real gateway (no agents).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/memnet"
	"github.com/upgate/upgate/internal/syncbuf"
)

// panicFs is afero's in-memory filesystem whose every call panics once
// armed: a stand-in for a bug in a filesystem layer.
type panicFs struct {
	afero.Fs
	armed *bool
}

func (p panicFs) trap(op string) {
	if *p.armed {
		panic("trap: " + op)
	}
}

func (p panicFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	p.trap("open")
	f, err := p.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return panicFile{f, p}, nil
}
func (p panicFs) Open(name string) (afero.File, error) { return p.OpenFile(name, os.O_RDONLY, 0) }
func (p panicFs) Mkdir(name string, perm os.FileMode) error {
	p.trap("mkdir")
	return p.Fs.Mkdir(name, perm)
}
func (p panicFs) Rename(o, n string) error { p.trap("rename"); return p.Fs.Rename(o, n) }
func (p panicFs) Stat(name string) (os.FileInfo, error) {
	p.trap("stat")
	return p.Fs.Stat(name)
}
func (p panicFs) Chtimes(name string, a, m time.Time) error {
	p.trap("chtimes")
	return p.Fs.Chtimes(name, a, m)
}

type panicFile struct {
	afero.File
	fs panicFs
}

func (f panicFile) Write(b []byte) (int, error) { f.fs.trap("write"); return f.File.Write(b) }
func (f panicFile) Read(b []byte) (int, error)  { f.fs.trap("read"); return f.File.Read(b) }
func (f panicFile) Close() error                { f.fs.trap("close"); return f.File.Close() }
func (f panicFile) TransferError(error)         { f.fs.trap("abort") }

func TestCallbacksRecoverPanics(t *testing.T) {
	var logs syncbuf.Buffer
	gw, err := gateway.New(context.Background(), &config.Config{}, gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	l := memnet.Listen("127.0.0.1:2121")
	gl := gw.NewListener(Protocol(), l)
	defer gl.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := gl.Accept()
		accepted <- c
	}()
	clientEnd, err := l.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer clientEnd.Close()
	conn := <-accepted
	defer conn.Close()

	armed := false
	mem := afero.NewMemMapFs()
	afero.WriteFile(mem, "/f", []byte("content"), 0o644)
	c := &client{sess: conn.(*gateway.Conn).Session(), ctx: context.Background(), cancel: func() {}}
	d := &clientDriver{Fs: panicFs{mem, &armed}, c: c, log: c.sess.Logger()}
	up, err := d.OpenFile("/up", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	down, err := d.OpenFile("/f", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}

	armed = true
	calls := []struct {
		op   string
		call func() error
	}{
		{"open", func() error { _, err := d.OpenFile("/g", os.O_RDONLY, 0); return err }},
		{"mkdir", func() error { return d.Mkdir("/dir", 0o755) }},
		{"rename", func() error { return d.Rename("/f", "/g") }},
		{"stat", func() error { _, err := d.Stat("/f"); return err }},
		{"chtimes", func() error { return d.Chtimes("/f", time.Now(), time.Now()) }},
		{"write", func() error { _, err := up.Write([]byte("x")); return err }},
		{"write", func() error { _, err := up.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); return err }},
		{"read", func() error { _, err := down.Read(make([]byte, 4)); return err }},
		{"abort", func() error { up.(interface{ TransferError(error) }).TransferError(errors.New("gone")); return nil }}, // returns: its log line says it panicked
		{"close", func() error { return up.Close() }},
	}
	for _, tc := range calls {
		if err := tc.call(); tc.op != "abort" && (err == nil || err.Error() != "internal error during "+tc.op) {
			t.Errorf("%s: %v, want \"internal error during %s\"", tc.op, err, tc.op)
		}
	}
	for _, op := range []string{"open", "mkdir", "rename", "stat", "chtimes", "write", "read", "abort", "close"} {
		found := false
		for _, line := range strings.Split(logs.String(), "\n") {
			found = found || strings.Contains(line, `msg="panic in FTP handler"`) && strings.Contains(line, ` op=`+op+` panic="trap: `)
		}
		if !found {
			t.Errorf("no panic log line for %s", op)
		}
	}
	if !strings.Contains(logs.String(), `stack="goroutine `) {
		t.Error("the panic log lines carry no stack")
	}

	// A panic in ClientConnected, which ftpserverlib does not recover,
	// refuses that client only.
	srv, err := New(nil, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&driver{s: srv}).ClientConnected(nil); err == nil || err.Error() != "internal error during connect" {
		t.Errorf("ClientConnected with a nil gateway: %v, want a recovered panic", err)
	}
}
