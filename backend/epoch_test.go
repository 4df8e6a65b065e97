package backend_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// epoch is the Unix epoch, 1970-01-01T00:00:00Z: a time like any other,
// not "leave unchanged" (the zero time.Time).
var epoch = time.Unix(0, 0)

// times is what is on disk for p: atime and mtime, not following a link.
func times(t *testing.T, p string) (atime, mtime time.Time) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())
}

// wantTimes fails the test unless p's times on disk are atime and mtime.
func wantTimes(t *testing.T, what, p string, atime, mtime time.Time) {
	t.Helper()
	a, m := times(t, p)
	if !a.Equal(atime) || !m.Equal(mtime) {
		t.Errorf("%s: atime %s, mtime %s; want %s, %s", what, a.UTC().Format(time.RFC3339Nano), m.UTC().Format(time.RFC3339Nano),
			atime.UTC().Format(time.RFC3339Nano), mtime.UTC().Format(time.RFC3339Nano))
	}
}

// TestChtimesEpoch: a time at the Unix epoch is set, as any other time,
// by path (Chtimes, Lchtimes) and on an open upload (SetTimes, kept by
// its commit); the zero time.Time leaves a time unchanged.
// Times before 1970 and far ahead round-trip too. The wire once took 0
// nanoseconds for "unchanged", and the epoch is 0 nanoseconds.
func TestChtimesEpoch(t *testing.T) {
	a := agenttest.Start(t, "")
	fsys := a.Fs(t, "")
	fstest.WriteFile(t, fsys, "/f", []byte("x"))
	if err := fsys.Mkdir("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.SymlinkIfPossible("f", "/l"); err != nil {
		t.Fatal(err)
	}
	five := time.Unix(5, 0)
	before := time.Date(1960, 6, 1, 12, 0, 0, 123456789, time.UTC)
	later := time.Date(2200, 1, 2, 3, 4, 5, 6, time.UTC)

	if err := fsys.Chtimes("/f", five, epoch); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes(5, epoch)", a.Dir+"/f", five, epoch)
	if err := fsys.Chtimes("/f", time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes(unchanged, unchanged)", a.Dir+"/f", five, epoch)
	if err := fsys.Chtimes("/f", epoch, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes(epoch, unchanged)", a.Dir+"/f", epoch, epoch)
	if err := fsys.Chtimes("/f", before, later); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes(1960, 2200)", a.Dir+"/f", before, later)

	if err := fsys.Chtimes("/d", epoch, epoch); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes of a directory", a.Dir+"/d", epoch, epoch)

	if err := backend.Lchtimes(fsys, "/l", epoch, epoch); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Lchtimes of a link", a.Dir+"/l", epoch, epoch)
	wantTimes(t, "the link's target after Lchtimes", a.Dir+"/f", before, later)

	// An upload: its times are set after its writes, and its commit
	// keeps them.
	f, err := fsys.OpenFile("/u", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	ts, ok := f.(backend.TimesSetter)
	if !ok {
		t.Fatalf("%T is no TimesSetter", f)
	}
	if _, err := f.Write([]byte(" more")); err != nil {
		t.Fatal(err)
	}
	if err := ts.SetTimes(epoch, epoch); err != nil {
		t.Fatal(err)
	}
	if err := ts.SetTimes(time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "SetTimes(epoch, epoch) on an upload, then SetTimes(unchanged, unchanged)", a.Dir+"/u", epoch, epoch)
	a.WaitIdle(t, 10*time.Second)
}

// TestChtimesEpochOldAgent: an agent without FILE_FEATURE_EPOCH_TIMES
// takes a 0 on the wire for "leave unchanged"; the gateway refuses to set
// a time to the epoch there, saying to upgrade the agent, instead of
// answering success for a time that was not set. Other times still go.
func TestChtimesEpochOldAgent(t *testing.T) {
	a := agenttest.Start(t, "")
	spy := &spyStream{hide: agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES}
	fsys := spy.fs(t, a)
	fstest.WriteFile(t, fsys, "/f", []byte("x"))
	at, mt := times(t, a.Dir+"/f")
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, backend.ErrAgentProtocol) || !strings.Contains(err.Error(), "upgrade the agent") {
			t.Errorf("%s with an old agent: %v, want a refusal saying to upgrade the agent", what, err)
		}
	}
	refused("Chtimes(5, epoch)", fsys.Chtimes("/f", time.Unix(5, 0), epoch))
	refused("Lchtimes(epoch, epoch)", backend.Lchtimes(fsys, "/f", epoch, epoch))
	wantTimes(t, "after the refusals", a.Dir+"/f", at, mt)
	if err := fsys.Chtimes("/f", time.Unix(5, 0), time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "Chtimes(5, unchanged)", a.Dir+"/f", time.Unix(5, 0), mt)

	f, err := fsys.OpenFile("/u", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	refused("SetTimes(epoch, epoch)", f.(backend.TimesSetter).SetTimes(epoch, epoch))
	if err := f.(backend.TimesSetter).SetTimes(time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "SetTimes(1, 1) on an upload", a.Dir+"/u", time.Unix(1, 0), time.Unix(1, 0))
	a.WaitIdle(t, 10*time.Second)
}
