package agents_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
)

// BenchmarkRoundTrip measures what one agent operation costs when the
// agent is a process of its own, against the floors under it, each
// between this process and a child process on loopback:
//
//   - tcp: a 40-byte message echoed over a plain TCP connection, the least
//     any request and reply between two processes can cost;
//   - grpc: the same echoed on one open gRPC bidirectional stream, the
//     transport the agent protocol runs on;
//   - stat: a Stat through backend.GRPCFs on a real agent's Session
//     stream (agent protocol v2), what every small FTP or SFTP command
//     waits for.
//
// Each runs with the next request sent at once (busy) and after a pause
// (idle: a 200 us sleep, which the timers of a small VM stretch to about
// 1 ms), as commands come from a client: on a virtual machine, a process
// that went idle costs more to wake. The figures are round-trip
// percentiles in microseconds (ns/op includes the pause); compare the rows
// of one run:
//
//	go test -run '^$' -bench RoundTrip -benchtime 3000x -count 2 ./backend/agents/
func BenchmarkRoundTrip(b *testing.B) {
	for _, kind := range []string{"tcp", "grpc", "stat"} {
		for _, pause := range []time.Duration{0, 200 * time.Microsecond} {
			name := kind + "/busy"
			if pause > 0 {
				name = kind + "/idle"
			}
			b.Run(name, func(b *testing.B) {
				addr, _ := startRoundTripChild(b, kind)
				rt := roundTripper(b, kind, addr)
				for range 100 { // connect, warm up
					rt()
				}
				var took []time.Duration
				for b.Loop() {
					if pause > 0 {
						time.Sleep(pause)
					}
					t0 := time.Now()
					rt()
					took = append(took, time.Since(t0))
				}
				slices.Sort(took)
				b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-us")
				b.ReportMetric(float64(took[len(took)*9/10].Microseconds()), "p90-us")
			})
		}
	}
}

// roundTripChildEnv names the server a child started by
// startRoundTripChild runs (TestMain): tcp, grpc or stat, or one of
// BenchmarkUploadHop's (serveHopChild).
const roundTripChildEnv = "UPGATE_ROUNDTRIP_CHILD"

// roundTripToken is the child agent's token.
const roundTripToken = "roundtrip"

// startRoundTripChild starts this test binary as a child serving kind on
// loopback, with env added to its environment, and returns its address and
// process ID; the child ends with the benchmark.
func startRoundTripChild(b *testing.B, kind string, env ...string) (string, int) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), roundTripChildEnv+"="+kind), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // closed at cleanup: the child exits
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("round-trip child %s: no address: %v", kind, err)
	}
	return line[:len(line)-1], cmd.Process.Pid
}

// roundTripper returns one round trip of kind against addr.
func roundTripper(b *testing.B, kind, addr string) func() {
	msg := make([]byte, 40)
	switch kind {
	case "tcp":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		buf := make([]byte, len(msg))
		return func() {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	case "grpc":
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		st, err := cc.NewStream(ctx, &echoDesc, "/roundtrip.Echo/Echo", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			b.Fatal(err)
		}
		var reply []byte
		return func() {
			if err := st.SendMsg(&msg); err != nil {
				b.Fatal(err)
			}
			if err := st.RecvMsg(&reply); err != nil {
				b.Fatal(err)
			}
		}
	default:
		cc, err := backend.Dial(addr, backend.DialOptions{Token: roundTripToken})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		fsys := backend.NewGRPCFs(ctx, cc, backend.Options{})
		return func() {
			if _, err := fsys.Stat("/"); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// serveRoundTripChild is the child's side: it serves kind on a loopback
// port, prints the address and returns when its stdin closes.
func serveRoundTripChild(kind string) error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer lis.Close()
	switch kind {
	case "tcp":
		go func() {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
		}()
	case "grpc":
		s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
		s.RegisterService(&grpc.ServiceDesc{ServiceName: "roundtrip.Echo", HandlerType: (*any)(nil), Streams: []grpc.StreamDesc{echoDesc}}, struct{}{})
		go func() { _ = s.Serve(lis) }()
		defer s.Stop()
	case "stat":
		root, err := os.MkdirTemp("", "roundtrip")
		if err != nil {
			return err
		}
		defer os.RemoveAll(root)
		srv, err := agent.New(agent.Config{Root: root, Token: roundTripToken, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = agent.Serve(ctx, srv, lis) }()
	default:
		stop, err := serveHopChild(kind, lis)
		if err != nil {
			return err
		}
		defer stop()
	}
	fmt.Println(lis.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// echoDesc is a bidirectional stream that sends back what it receives.
var echoDesc = grpc.StreamDesc{
	StreamName: "Echo", ServerStreams: true, ClientStreams: true,
	Handler: func(_ any, s grpc.ServerStream) error {
		var msg []byte
		for {
			if err := s.RecvMsg(&msg); err != nil {
				return nil
			}
			if err := s.SendMsg(&msg); err != nil {
				return err
			}
		}
	},
}

// rawCodec passes *[]byte through as the message's bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append((*v.(*[]byte))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }
