package backend

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/fstest"
)

// TestFileFeatures: the agent announces that it aborts a close after a
// failed write, so Close pipelines; against an agent without that bit
// (pipelineClose false, as with an older agent) Close waits for the
// writes' replies first and still commits.
func TestFileFeatures(t *testing.T) {
	dir := t.TempDir()
	srv, err := agent.New(agent.Config{Root: dir, Token: "tok", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, srv, lis) }()
	cc, err := Dial(lis.Addr().String(), DialOptions{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		<-served
		srv.Close()
	})
	g := NewGRPCFs(ctx, cc, Options{})
	data := fstest.Data(3<<20+5, 9)
	for _, pipeline := range []bool{true, false} {
		name := "/pipelined.bin"
		if !pipeline {
			name = "/waited.bin"
		}
		af, err := g.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f := af.(*file)
		if !f.pipelineClose {
			t.Fatal("the agent did not announce FILE_FEATURE_CLOSE_AFTER_FAILED_WRITE_ABORTS")
		}
		f.pipelineClose = pipeline
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close (pipelined %v): %v", pipeline, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s (pipelined %v): %d bytes, %v", name, pipeline, len(got), err)
		}
	}
}
