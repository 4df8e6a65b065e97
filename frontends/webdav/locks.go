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
// held at once, the temporary ones x/net/webdav takes during a write
// included.
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

// Create implements dav.LockSystem.
func (u *userLocks) Create(now time.Time, details dav.LockDetails) (string, error) {
	details.Duration = u.capped(details.Duration)
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
	err := u.LockSystem.Unlock(now, token)
	if err == nil || errors.Is(err, dav.ErrNoSuchLock) {
		u.mu.Lock()
		delete(u.expiry, token)
		u.mu.Unlock()
	}
	return err
}
