package agent_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// TestBusy: Server.Busy counts the gateway sessions that served a request
// within the window, or are serving one now (a hash outlasting it), and
// not those that only said Hello; protocol v1's open files count one
// each while they work, its other calls one together, its health checks
// (Status) not at all. A file request outlasting the window (a slow write
// or commit) is counted the same way as the hash, by the file's worker;
// no test here holds one long enough to tell.
func TestBusy(t *testing.T) {
	a, c := start(t, "")
	const size = 256 << 20 // sparse: a hash of it takes a while, everywhere
	const zerosSHA256 = "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484"
	f, err := os.Create(filepath.Join(a.Dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	busy := func(within time.Duration) int { return a.Server.Busy(within) }
	// A request's reply goes out before its count ends: wait for the end.
	settles := func(what string, within time.Duration, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for busy(within) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: Busy(%v) = %d, want %d", what, within, busy(within), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

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
	settles("no request in progress and an empty window", 0, 0)

	// A hash in progress keeps its session busy past any window.
	id := r1.send(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hash{Hash: &agentpb.HashRequest{
		Path: []byte("big"), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256}}})
	type reply struct {
		resp *agentpb.SessionResponse
		err  error
	}
	replied := make(chan reply, 1)
	go func() {
		resp, err := r1.s.Recv()
		replied <- reply{resp, err}
	}()
	seen, got := false, reply{}
	for done := false; !done; {
		seen = seen || busy(0) == 1
		select {
		case got = <-replied:
			done = true
		case <-time.After(time.Millisecond):
		}
	}
	if got.err != nil {
		t.Fatalf("hash: %v", got.err)
	}
	if got.resp.GetId() != id || hex.EncodeToString(got.resp.GetHash().GetSum()) != zerosSHA256 {
		t.Fatalf("hash reply %v, want id %d and the SHA-256 of %d zero bytes", got.resp, id, size)
	}
	if !seen {
		t.Fatal("Busy(0) never counted the session while its hash ran")
	}
	settles("after the hash's reply", 0, 0)

	// Protocol v1: an open file counts while it works, path calls count
	// together, Status never.
	ctx := testCtx(t)
	if _, err := c.Status(ctx, &agentpb.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("v1.txt"), Flags: uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE)})
	if n := busy(time.Hour); n != 3 {
		t.Fatalf("two sessions and a v1 open file that worked, a Status call: Busy = %d, want 3", n)
	}
	if _, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte("big")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte(".")}); err != nil {
		t.Fatal(err)
	}
	if n := busy(time.Hour); n != 4 {
		t.Fatalf("and two v1 Stat calls: Busy = %d, want 4", n)
	}
	// Each count ends before its reply goes out (v1 calls and file
	// requests alike), so a window from here holds the write alone.
	since := time.Now()
	fst.write(0, "v1\n")
	if n := busy(time.Since(since)); n != 1 {
		t.Fatalf("only the v1 file wrote within the window: Busy = %d, want 1", n)
	}
	fst.close(false)
	if got, err := os.ReadFile(filepath.Join(a.Dir, "v1.txt")); err != nil || string(got) != "v1\n" {
		t.Fatalf("v1.txt: %q, %v", got, err)
	}
}
