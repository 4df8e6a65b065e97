package agent_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// TestBusy: Server.Busy counts the Session streams that served a request
// within the window, or are serving one now (a hash outlasting it), and
// not the ones that only said Hello.
func TestBusy(t *testing.T) {
	a, c := start(t, "")
	const size = 256 << 20 // sparse: a hash of it takes a while, everywhere
	f, err := os.Create(filepath.Join(a.Dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	busy := func(within time.Duration) int { return a.Server.Busy(within) }

	r1, _ := session(t, c, "")
	r2, _ := session(t, c, "")
	if n := busy(time.Hour); n != 0 {
		t.Fatalf("two sessions that only said Hello: Busy = %d, want 0", n)
	}
	r1.ok(stat("big"))
	if n := busy(time.Hour); n != 1 {
		t.Fatalf("one session served a Stat: Busy = %d, want 1", n)
	}
	r2.ok(stat("big"))
	if n := busy(time.Hour); n != 2 {
		t.Fatalf("both sessions served a Stat: Busy = %d, want 2", n)
	}
	if n := busy(0); n != 0 {
		t.Fatalf("no request in progress and an empty window: Busy = %d, want 0", n)
	}

	// A hash in progress keeps its session busy past any window.
	id := r1.send(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hash{Hash: &agentpb.HashRequest{
		Path: []byte("big"), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256}}})
	replied := make(chan *agentpb.SessionResponse, 1)
	go func() {
		resp, err := r1.s.Recv()
		if err != nil {
			t.Errorf("recv: %v", err)
		}
		replied <- resp
	}()
	seen := false
	var resp *agentpb.SessionResponse
	for resp == nil {
		seen = seen || busy(0) == 1
		select {
		case resp = <-replied:
		case <-time.After(time.Millisecond):
		}
	}
	want := sha256.New()
	if _, err := io.CopyN(want, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	if resp.GetId() != id || !bytes.Equal(resp.GetHash().GetSum(), want.Sum(nil)) {
		t.Fatalf("hash reply %v, want id %d and the digest of %d zero bytes", resp, id, size)
	}
	if !seen {
		t.Fatal("Busy(0) never counted the session while its hash ran")
	}
	deadline := time.Now().Add(10 * time.Second)
	for busy(0) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Busy(0) = %d after the hash's reply, want 0", busy(0))
		}
		time.Sleep(time.Millisecond)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
