package agents

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
)

// embeddedPool starts a pool with one embedded agent, "local", over a
// temporary root. observe, if non-nil, sees every call on its gRPC
// connection and every operation of its filesystems.
func embeddedPool(t testing.TB, observe ...func(agent, method, code string, d time.Duration)) (*Pool, string) {
	t.Helper()
	root := t.TempDir()
	opts := Options{Logger: slog.New(slog.DiscardHandler)}
	if len(observe) > 0 {
		opts.ObserveCall = observe[0]
	}
	pool, err := New(context.Background(), map[string]config.Agent{"local": {Embedded: true, Root: root}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	})
	return pool, root
}

// TestLocalSessionsConformance runs the filesystem suite on an embedded
// agent's in-process Session streams: the same expectations as over gRPC
// (backend's TestConformance), including the 64 MiB round trip whose
// writes reuse the gateway's buffers right after each Send.
func TestLocalSessionsConformance(t *testing.T) {
	var mu sync.Mutex
	methods := map[string]int{}
	pool, root := embeddedPool(t, func(_, method, _ string, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		methods[method]++
	})
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			dir := "user/" + t.Name()[len("TestLocalSessionsConformance/"):]
			if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			fsys, _, err := pool.FS(t.Context(), "local", "alice", backend.Options{Root: dir})
			if err != nil {
				t.Fatal(err)
			}
			return fsys
		},
		AfterEach: func(t *testing.T) { waitNoHandles(t, pool) },
		Short:     testing.Short(),
	})
	mu.Lock()
	defer mu.Unlock()
	// Over gRPC, the dial's interceptor would report each Session
	// stream; the filesystem's own observer reports each operation.
	if methods["Session"] != 0 || methods["Open"] == 0 || methods["Close"] == 0 {
		t.Fatalf("observed %v; want opens and commits, and no Session stream over gRPC", methods)
	}
}

// waitNoHandles waits until the embedded agent holds no open file: every
// file of a finished subtest closed or aborted on the agent's side too.
func waitNoHandles(t *testing.T, pool *Pool) {
	t.Helper()
	srv, _ := pool.Embedded("local")
	deadline := time.Now().Add(10 * time.Second)
	for srv.OpenHandles() != 0 || srv.UploadsInProgress() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent still holds %d files, %d uploads", srv.OpenHandles(), srv.UploadsInProgress())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLocalSessionEndAbortsUploads: when the session's context ends (the
// client vanished), the uploads open on its stream abort on the agent:
// nothing of them becomes visible, the old file stays, and no temp file
// is left.
func TestLocalSessionEndAbortsUploads(t *testing.T) {
	pool, root := embeddedPool(t)
	if err := os.WriteFile(filepath.Join(root, "keep.txt"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fsys, _, err := pool.FS(ctx, "local", "alice", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Create("/keep.txt")
	if err != nil {
		t.Fatal(err)
	}
	g, err := fsys.Create("/new.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []afero.File{f, g} {
		if _, err := w.Write(fstest.Data(3<<20, 1)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := f.Close(); err == nil {
		t.Fatal("an upload closed after its session ended committed")
	}
	waitNoHandles(t, pool)
	got, err := os.ReadFile(filepath.Join(root, "keep.txt"))
	if err != nil || string(got) != "old" {
		t.Fatalf("keep.txt holds %d bytes (%v); want the old content, 3 bytes", len(got), err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("root holds %v; want only keep.txt", names)
	}
}

// TestLocalSessionAgentStops: a stream to an embedded agent that stops
// ends as a gRPC stream to a stopped server does (Unavailable), its upload
// aborts, and no new stream opens.
func TestLocalSessionAgentStops(t *testing.T) {
	pool, root := embeddedPool(t)
	e := pool.embedded["local"]
	fsys, _, err := pool.FS(t.Context(), "local", "alice", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Create("/half.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	e.stop()
	e.sessions.stop() // returns once every handler has ended
	err = f.Close()
	if err == nil {
		t.Fatal("an upload whose agent stopped committed")
	}
	if _, err := fsys.Stat("/"); status.Code(errors.Unwrap(err)) != codes.Unavailable && !strings.Contains(err.Error(), "unreachable") && !strings.Contains(err.Error(), "embedded agent stopped") {
		t.Fatalf("stat after the agent stopped: %v; want the agent unavailable", err)
	}
	if _, err := os.Stat(filepath.Join(root, "half.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("half.txt: %v; want it absent", err)
	}
}

// TestLocalStreamCloseSend: the agent reads every request sent before
// CloseSend, answers them, and then ends the stream cleanly (io.EOF at the
// gateway's Recv after the answers).
func TestLocalStreamCloseSend(t *testing.T) {
	s := streamToFileA(t)
	for _, req := range helloAndStats(3) {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for {
		resp, err := s.Recv()
		if err != nil {
			if !isEOF(err) {
				t.Fatalf("Recv after CloseSend: %v; want io.EOF", err)
			}
			break
		}
		if e := resp.GetError(); e != nil {
			t.Fatalf("reply %d: %v", resp.GetId(), e)
		}
		if info := resp.GetInfo(); info != nil {
			sizes = append(sizes, info.GetSize())
		}
	}
	if len(sizes) != 3 || sizes[0] != 3 || sizes[1] != 3 || sizes[2] != 3 {
		t.Fatalf("stat sizes %v; want three answers of 3", sizes)
	}
}

// streamToFileA opens an in-process Session stream to an embedded agent
// whose root holds the file a ("abc"); the stream ends after 30 s at most,
// so that a Recv waiting for an end that does not come fails the test.
func streamToFileA(t *testing.T) agentpb.Agent_SessionClient {
	t.Helper()
	pool, root := embeddedPool(t)
	if err := os.WriteFile(filepath.Join(root, "a"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := pool.embedded["local"].sessions.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// helloAndStats is a Session's Hello followed by n Stats of "a".
func helloAndStats(n int) []*agentpb.SessionRequest {
	reqs := []*agentpb.SessionRequest{{Id: 1, Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: agent.Protocol}}}}
	for i := range n {
		reqs = append(reqs, &agentpb.SessionRequest{Id: uint64(i + 2), Op: &agentpb.SessionRequest_Stat{Stat: &agentpb.PathRequest{Path: []byte("a")}}})
	}
	return reqs
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// TestLocalStreamDelivers: after Deliver, the agent's replies go to the
// function, in the order the agent sends them, and none waits for Recv,
// which returns only the stream's end (io.EOF after CloseSend).
func TestLocalStreamDelivers(t *testing.T) {
	s := streamToFileA(t)
	var mu sync.Mutex
	var ids []uint64
	s.(interface {
		Deliver(func(*agentpb.SessionResponse))
	}).Deliver(func(resp *agentpb.SessionResponse) {
		mu.Lock()
		defer mu.Unlock()
		if e := resp.GetError(); e != nil {
			t.Errorf("reply %d: %v", resp.GetId(), e)
		}
		ids = append(ids, resp.GetId())
	})
	reqs := helloAndStats(100)
	for _, req := range reqs {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Recv(); !isEOF(err) {
		t.Fatalf("Recv: %v, %v; want only the end (io.EOF)", resp, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != len(reqs) {
		t.Fatalf("%d replies delivered, want %d", len(ids), len(reqs))
	}
	for i, id := range ids {
		if id != reqs[i].GetId() {
			t.Fatalf("delivered ids %v, want the requests' order", ids)
		}
	}
}

// TestLocalStreamCopiesWriteData: the gateway reuses a write's buffer as
// soon as Send returns (gRPC has serialized it by then), a WriteOp's and
// the last write a CloseOp carries alike; the in-process stream copies
// both, so that what lands is what was sent, whatever the buffers hold
// after.
func TestLocalStreamCopiesWriteData(t *testing.T) {
	pool, root := embeddedPool(t)
	s, err := pool.embedded["local"].sessions.open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first, last := []byte("first part, "), []byte("last part\n")
	const open = 2
	reqs := []*agentpb.SessionRequest{
		{Id: 1, Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: agent.Protocol}}},
		{Id: open, Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: []byte("f"),
			Flags: uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o644}}},
		{Id: 3, File: open, Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: first}}},
		{Id: 4, File: open, Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{Write: &agentpb.WriteOp{Offset: int64(len(first)), Data: last}}}},
	}
	for _, req := range reqs {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		// The buffer is the gateway's again: reused for the next message.
		for _, b := range [][]byte{req.GetWrite().GetData(), req.GetClose().GetWrite().GetData()} {
			for i := range b {
				b[i] = 'X'
			}
		}
	}
	for range reqs {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		if e := resp.GetError(); e != nil {
			t.Fatalf("reply %d: %v", resp.GetId(), e)
		}
	}
	got, err := os.ReadFile(filepath.Join(root, "f"))
	if want := "first part, last part\n"; err != nil || string(got) != want {
		t.Fatalf("committed %q, %v; want %q", got, err, want)
	}
}

// TestLocalStreamLendsUploadData: an upload to an embedded agent through
// ReadFrom (FTP's STOR) hands the agent the buffers it read the data into
// and takes them back once each write is answered, instead of a copy of
// every message: the upload of 128 MiB allocates far less than its size
// (a copy per message allocated all of it, and the collector's work for it
// was most of a bulk upload's CPU), and what lands is what was sent.
func TestLocalStreamLendsUploadData(t *testing.T) {
	if testing.Short() {
		t.Skip("uploads 128 MiB")
	}
	pool, root := embeddedPool(t)
	fsys, _, err := pool.FS(t.Context(), "local", "alice", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const size = 128 << 20
	data := fstest.Data(size, 7)
	f, err := fsys.Create("/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// A reader without WriteTo, as a socket is: ReadFrom reads into its
	// own buffers.
	n, err := backend.ReadFrom(f, struct{ io.Reader }{bytes.NewReader(data)})
	if err == nil {
		err = f.Close()
	}
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("upload: %d bytes, %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(root, "big.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("committed %d bytes (%v), not what was sent", len(got), err)
	}
	// Lent buffers come back to a sync.Pool; the race detector's pool
	// drops a quarter of them, so the bound is loose: half the upload.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/2 {
		t.Fatalf("the upload of %d MiB allocated %d MiB: its data was copied", size>>20, alloc>>20)
	}
}

// TestStalledAgentCutsStream: an agent whose Session handler stopped
// reading (stuck in an open(2) that waits for a file lease to break, as it
// would on a hung filesystem) fills the stream, and a send into it waits.
// Each such wait is bounded by the call timeout: the stream is cut, every
// request on it fails with a message that says so instead of hanging
// until the agent moves again, and the next operation gets a new stream,
// which works while the old handler is still stuck.
func TestStalledAgentCutsStream(t *testing.T) {
	pool, root := embeddedPool(t)
	leased := filepath.Join(root, "leased")
	if err := os.WriteFile(leased, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	lfd, err := unix.Open(leased, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(lfd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		unix.Close(lfd)
		t.Skipf("cannot take a write lease here: %v", err)
	}
	// Runs before the pool's cleanup: the stuck open returns and the
	// agent's handler can end.
	t.Cleanup(func() {
		_, _ = unix.FcntlInt(uintptr(lfd), unix.F_SETLEASE, unix.F_UNLCK)
		unix.Close(lfd)
	})
	const timeout = time.Second
	fsys, _, err := pool.FS(t.Context(), "local", "alice", backend.Options{CallTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Stat("/"); err != nil { // the stream, open
		t.Fatal(err)
	}
	// The open waits for the lease for 45 s (fs.lease-break-time) inside
	// the agent's handler; the call gives up after its timeout.
	if f, err := fsys.Open("/leased"); err == nil {
		f.Close()
		t.Fatal("the open of a leased file returned at once: the lease did not hold it")
	}
	// More requests than the stream holds: the last ones wait in Send.
	const n = 2 * 64
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := fsys.Stat("/leased")
			errs <- err
		}()
	}
	deadline := time.After(10 * timeout)
	stalled := 0
	for range n {
		select {
		case err := <-errs:
			if err != nil && strings.Contains(err.Error(), "took no request") {
				stalled++
			}
		case <-deadline:
			t.Fatalf("requests still waiting %v after the agent stalled", 10*timeout)
		}
	}
	if stalled == 0 {
		t.Fatal("no request failed for the stalled stream")
	}
	// A new stream works while the old handler is still stuck.
	if fi, err := fsys.Stat("/leased"); err != nil || fi.Size() != 1 {
		t.Fatalf("Stat on a new stream: %v, %v", fi, err)
	}
}
