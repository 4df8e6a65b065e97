package webdav

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	dav "golang.org/x/net/webdav"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

func TestStatusFor(t *testing.T) {
	pathErr := func(err error) error { return &fs.PathError{Op: "open", Path: "/a", Err: err} }
	tests := []struct {
		name   string
		err    error
		status int // x/net/webdav's
		want   int
	}{
		{"nil keeps", nil, http.StatusCreated, http.StatusCreated},
		{"body too large", fmt.Errorf("body: %w", &http.MaxBytesError{Limit: 1}), 400, 413},
		{"body stalled", fmt.Errorf("body: %w", os.ErrDeadlineExceeded), 405, 408},
		{"body cut", fmt.Errorf("body: %w", io.ErrUnexpectedEOF), 405, 400},
		{"agent unreachable", fmt.Errorf("agent web for user alice unreachable: %w", backend.ErrUnavailable), 404, 503},
		{"user limit", fmt.Errorf("%w: at most 2", gateway.ErrTooManyConnections), 500, 503},
		{"draining", gateway.ErrServerClosed, 500, 503},
		{"too many open files", pathErr(syscall.EMFILE), 404, 503},
		{"too many locks", fmt.Errorf("%w: 1000", errTooManyLocks), 500, 503},
		{"disk full", pathErr(syscall.ENOSPC), 405, 507},
		{"quota", pathErr(syscall.EDQUOT), 405, 507},
		{"wrong password", gateway.ErrAuthFailed, 500, 401},
		{"read-only mount", pathErr(syscall.EROFS), 405, 403},
		{"permission", pathErr(os.ErrPermission), 405, 403},
		{"banned", gateway.ErrBanned, 500, 403},
		{"another mount", pathErr(syscall.EXDEV), 403, 502},
		{"collection as a file", pathErr(syscall.EISDIR), 404, 405},
		{"not a directory", pathErr(syscall.ENOTDIR), 403, 409},
		{"not empty", pathErr(syscall.ENOTEMPTY), 403, 409},
		{"missing parent of a MOVE", fmt.Errorf("%w: %w", errNoParent, pathErr(os.ErrNotExist)), 403, 409},
		{"name too long", pathErr(syscall.ENAMETOOLONG), 404, 414},
		{"bad name", pathErr(syscall.EINVAL), 403, 400},
		{"missing", pathErr(os.ErrNotExist), 403, 404},
		{"missing parent of a PUT", pathErr(os.ErrNotExist), 409, 409},
		{"exists keeps 405", pathErr(os.ErrExist), 405, 405},
		{"exists keeps 412", os.ErrExist, 412, 412},
		{"x/net's own keeps", errors.New("webdav: invalid depth"), 400, 400},
		{"unknown with a success status", errors.New("boom"), 200, 500},
	}
	for _, tt := range tests {
		if got := statusFor(tt.err, tt.status); got != tt.want {
			t.Errorf("%s: statusFor(%v, %d) = %d, want %d", tt.name, tt.err, tt.status, got, tt.want)
		}
	}
}

func TestUserLocksBounded(t *testing.T) {
	l := newLockSystems(3, time.Hour)
	ls := l.forUser("alice")
	if l.forUser("alice") != ls || l.forUser("bob") == ls {
		t.Fatal("lock systems are not one per user")
	}
	now := time.Now()
	var toks []string
	for i := range 3 {
		tok, err := ls.Create(now, dav.LockDetails{Root: fmt.Sprintf("/f%d", i), Duration: 2 * time.Hour, ZeroDepth: true})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	if _, err := ls.Create(now, dav.LockDetails{Root: "/f3", Duration: time.Minute, ZeroDepth: true}); !errors.Is(err, errTooManyLocks) {
		t.Fatalf("a 4th lock: %v, want errTooManyLocks", err)
	}
	// bob's locks are apart.
	if _, err := l.forUser("bob").Create(now, dav.LockDetails{Root: "/f0", Duration: time.Minute, ZeroDepth: true}); err != nil {
		t.Fatalf("bob's lock on his /f0: %v", err)
	}
	if err := ls.Unlock(now, toks[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Create(now, dav.LockDetails{Root: "/f3", Duration: time.Minute, ZeroDepth: true}); err != nil {
		t.Fatalf("a lock after an UNLOCK: %v", err)
	}
	// A lock asked for longer lasts the cap: an hour later its slot is
	// free and its path unlocked.
	later := now.Add(time.Hour + time.Second)
	if _, err := ls.Create(later, dav.LockDetails{Root: "/f1", Duration: time.Minute, ZeroDepth: true}); err != nil {
		t.Fatalf("a lock on /f1 after its infinite lock's cap: %v", err)
	}
	if _, err := ls.Refresh(later, toks[2], time.Minute); !errors.Is(err, dav.ErrNoSuchLock) {
		t.Fatalf("refresh of an expired lock: %v", err)
	}
}

// TestUnlockedWritesDoNotExcludeEachOther: x/net/webdav's temporary lock
// for a write without an If header (infinite, zero depth, no owner)
// conflicts only with a client's lock, not with another such write.
func TestUnlockedWritesDoNotExcludeEachOther(t *testing.T) {
	ls := newLockSystems(2, time.Hour).forUser("alice")
	now := time.Now()
	temp := dav.LockDetails{Root: "/project", Duration: -1, ZeroDepth: true}
	a, err := ls.Create(now, temp)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ls.Create(now, temp)
	if err != nil {
		t.Fatalf("a second unlocked write of /project while the first runs: %v", err)
	}
	for range 5 { // they take no slot of MaxLocks
		if _, err := ls.Create(now, temp); err != nil {
			t.Fatal(err)
		}
	}
	if err := ls.Unlock(now, a); err != nil {
		t.Fatal(err)
	}
	if err := ls.Unlock(now, b); err != nil {
		t.Fatal(err)
	}
	tok, err := ls.Create(now, dav.LockDetails{Root: "/project", Duration: time.Minute, OwnerXML: "<D:href>me</D:href>"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Create(now, temp); !errors.Is(err, dav.ErrLocked) {
		t.Fatalf("an unlocked write under a client's lock: %v, want ErrLocked", err)
	}
	if _, err := ls.Create(now, dav.LockDetails{Root: "/project/sub", Duration: -1, ZeroDepth: true}); !errors.Is(err, dav.ErrLocked) {
		t.Fatalf("an unlocked write below a client's depth-infinity lock: %v, want ErrLocked", err)
	}
	if err := ls.Unlock(now, tok); err != nil {
		t.Fatal(err)
	}
}

func TestLockTimeout(t *testing.T) {
	s := &Server{cfg: Config{}.withDefaults()}
	for h, want := range map[string]time.Duration{
		"":                            time.Hour,
		"Infinite":                    time.Hour,
		"Infinite, Second-4100000000": time.Hour,
		"Second-600":                  10 * time.Minute,
		" Second-7200 , Infinite":     time.Hour,
		"Second-0":                    0,
	} {
		if d, ok := s.lockTimeout(h); !ok || d != want {
			t.Errorf("lockTimeout(%q) = %v, %v; want %v", h, d, ok, want)
		}
	}
	for _, h := range []string{"Forever", "Second-", "Second-x", "Second--1", "Second-99999999999"} {
		if _, ok := s.lockTimeout(h); ok {
			t.Errorf("lockTimeout(%q) accepted", h)
		}
	}
}

func TestParseTimes(t *testing.T) {
	for v, want := range map[string]time.Time{
		"1600000000":     time.Unix(1600000000, 0),
		" 1600000000 ":   time.Unix(1600000000, 0),
		"1600000000.5":   time.Unix(1600000000, 500000000),
		"0":              time.Unix(0, 0),
		"1600000000.123": time.Unix(1600000000, 123000000),
	} {
		if got, err := parseUnixTime(v); err != nil || !got.Equal(want) {
			t.Errorf("parseUnixTime(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "-1", "yesterday", "1e9", "1600000000.x", "99999999999999999999"} {
		if _, err := parseUnixTime(v); err == nil {
			t.Errorf("parseUnixTime(%q) accepted", v)
		}
	}
	for v, want := range map[string]time.Time{
		"1500000000":                    time.Unix(1500000000, 0),
		"Thu, 09 Oct 2025 17:54:43 GMT": time.Date(2025, 10, 9, 17, 54, 43, 0, time.UTC),
	} {
		if got, err := parsePropTime(v); err != nil || !got.Equal(want) {
			t.Errorf("parsePropTime(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := parsePropTime("soon"); err == nil {
		t.Error("parsePropTime accepted a word")
	}
}

// TestCredentialKeyed: the HMAC a connection keeps tells names and
// passwords apart even where their concatenations agree, and depends on
// the server's key.
func TestCredentialKeyed(t *testing.T) {
	a, err := New(nil, Config{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(nil, Config{})
	if string(a.credential("ab", "c")) == string(a.credential("a", "bc")) {
		t.Error(`credential("ab", "c") == credential("a", "bc")`)
	}
	if first, again := a.credential("alice", "pw"), a.credential("alice", "pw"); string(first) != string(again) {
		t.Error("credential is not deterministic")
	}
	if string(a.credential("alice", "pw")) == string(b.credential("alice", "pw")) {
		t.Error("two servers share a credential key")
	}
}
