package webdav

import (
	"errors"
	"fmt"
	"sync"
	"time"

	dav "golang.org/x/net/webdav"
)

// errTooManyLocks refuses a LOCK beyond Config.MaxLocks (503).
var errTooManyLocks = errors.New("webdav: too many locks")

// lockSystems holds each user's locks: a user's paths are their own
// namespace, so their locks never meet another user's. They live in this
// process's memory only.
type lockSystems struct {
	max         int
	maxDuration time.Duration

	// mu guards byUser, which grows by one entry per user who logged in.
	mu     sync.Mutex
	byUser map[string]*userLocks
}

func newLockSystems(max int, maxDuration time.Duration) *lockSystems {
	return &lockSystems{max: max, maxDuration: maxDuration, byUser: make(map[string]*userLocks)}
}

// forUser returns user's lock system, made on first use.
func (l *lockSystems) forUser(user string) dav.LockSystem {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.byUser[user]
	if !ok {
		u = &userLocks{LockSystem: dav.NewMemLS(), user: user, max: l.max, maxDuration: l.maxDuration, expiry: make(map[string]time.Time)}
		l.byUser[user] = u
	}
	return u
}

// userLocks is x/net/webdav's in-memory lock system with every lock's
// duration capped (a lock asked for "Infinite" lasts maxDuration; a client
// that vanished leaves nothing locked for longer) and at most max locks
// held at once.
//
// x/net/webdav takes a temporary exclusive lock on the paths of every
// write that brings no If header, for the write's duration: two such
// writes of one path at once (rclone's parallel transfers creating the
// same parent collection, an editor saving twice over two connections)
// then fail with 423 Locked, which no client expects of writes that asked
// for no lock. Here such a write only checks that no client holds a lock
// on its paths: writes without locks do not exclude each other, as on
// any filesystem, and a client's LOCK still excludes them.
type userLocks struct {
	dav.LockSystem
	user        string
	max         int
	maxDuration time.Duration

	// mu guards expiry: each lock held, by token, and when it ends.
	mu     sync.Mutex
	expiry map[string]time.Time
}

func (u *userLocks) capped(d time.Duration) time.Duration {
	if d < 0 || d > u.maxDuration {
		return u.maxDuration
	}
	return d
}

// unlockedWrite is the token Create returns for a write that holds no
// lock; Unlock accepts it and does nothing.
const unlockedWrite = "urn:upgate:unlocked-write"

// Create implements dav.LockSystem. x/net/webdav's temporary locks are
// the ones with an infinite duration: every client LOCK reaches here with
// a finite one (Server.check rewrites its Timeout header).
func (u *userLocks) Create(now time.Time, details dav.LockDetails) (string, error) {
	temporary := details.Duration < 0
	details.Duration = u.capped(details.Duration)
	if temporary {
		u.mu.Lock()
		defer u.mu.Unlock()
		tok, err := u.LockSystem.Create(now, details)
		if err != nil {
			return "", err // a client's lock: 423
		}
		_ = u.LockSystem.Unlock(now, tok)
		return unlockedWrite, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for tok, end := range u.expiry {
		if !now.Before(end) {
			delete(u.expiry, tok)
		}
	}
	if len(u.expiry) >= u.max {
		return "", fmt.Errorf("%w: user %s holds %d (at most %d at once); UNLOCK some or wait for them to expire", errTooManyLocks, u.user, len(u.expiry), u.max)
	}
	tok, err := u.LockSystem.Create(now, details)
	if err == nil {
		u.expiry[tok] = now.Add(details.Duration)
	}
	return tok, err
}

// Refresh implements dav.LockSystem.
func (u *userLocks) Refresh(now time.Time, token string, duration time.Duration) (dav.LockDetails, error) {
	duration = u.capped(duration)
	ld, err := u.LockSystem.Refresh(now, token, duration)
	if err == nil {
		u.mu.Lock()
		u.expiry[token] = now.Add(duration)
		u.mu.Unlock()
	}
	return ld, err
}

// Unlock implements dav.LockSystem.
func (u *userLocks) Unlock(now time.Time, token string) error {
	if token == unlockedWrite {
		return nil
	}
	err := u.LockSystem.Unlock(now, token)
	if err == nil || errors.Is(err, dav.ErrNoSuchLock) {
		u.mu.Lock()
		delete(u.expiry, token)
		u.mu.Unlock()
	}
	return err
}
