package agent_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
)

// ExampleServe serves a directory with the agent and writes a file into it
// through the gateway's filesystem client.
func ExampleServe() {
	dir, err := os.MkdirTemp("", "upgate-agent-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	const token = "example-token"
	srv, err := agent.New(agent.Config{Root: dir, Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, srv, lis) }()
	defer func() {
		stop() // Serve stops the gRPC server and returns once every stream has ended
		if err := <-served; err != nil {
			log.Fatal(err)
		}
	}()

	// The gateway's side: a connection and an afero.Fs over it.
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: token})
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	fsys := backend.NewGRPCFs(ctx, cc, backend.Options{})

	f, err := fsys.Create("hello.txt")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.WriteString("hello through the agent\n"); err != nil {
		log.Fatal(err)
	}
	// The upload is atomic: the file appears, complete, when Close returns.
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	b, err := os.ReadFile(filepath.Join(dir, "hello.txt"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output: hello through the agent
}
