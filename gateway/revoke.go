package gateway

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
)

// ErrRevoked is wrapped by the errors of every filesystem operation a
// session attempts once a reload revoked its login, in the moment before
// the session is closed.
var ErrRevoked = errors.New("gateway: login revoked by a configuration reload")

// credential is what a session logged in with and what the login granted,
// kept so that a reload can tell whether the login still holds: the bcrypt
// hash the password matched (never the password itself), or the public
// key; and the user's mounts. A password whose hash a reload replaced
// counts as changed even if it is the same password: without the
// password, the new hash cannot be checked.
type credential struct {
	method string         // "password" or "publickey"
	secret []byte         // the bcrypt hash, or the key's wire encoding
	mounts []config.Mount // sorted by path
}

func passwordCredential(u *user) credential {
	return credential{method: "password", secret: u.hash, mounts: u.sorted}
}

func keyCredential(u *user, key ssh.PublicKey) credential {
	return credential{method: "publickey", secret: key.Marshal(), mounts: u.sorted}
}

// sortedMounts returns a copy of ms sorted by path (unique per user): the
// order of a user's mounts means nothing.
func sortedMounts(ms []config.Mount) []config.Mount {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b config.Mount) int { return cmp.Compare(a.Path, b.Path) })
	return out
}

// revoked says why u (nil: the user is gone) no longer accepts c, in
// words for the client and the log; "" if it still does. The credential
// is judged first: a session whose password changed is told that, even if
// its mounts changed too.
func (c credential) revoked(name string, u *user) string {
	switch {
	case u == nil:
		return fmt.Sprintf("user %s was removed", name)
	case c.method == "password" && u.hash == nil:
		return fmt.Sprintf("password login of user %s was turned off", name)
	case c.method == "password" && !bytes.Equal(u.hash, c.secret):
		return fmt.Sprintf("the password of user %s changed", name)
	case c.method == "publickey":
		if !u.authorizes(c.secret) {
			return fmt.Sprintf("the key user %s logged in with is no longer authorized", name)
		}
	}
	if !slices.Equal(c.mounts, u.sorted) {
		// The session's filesystem was built from the old mounts: a path,
		// agent, root or read_only changed, or a mount came or went.
		return fmt.Sprintf("the mounts of user %s changed", name)
	}
	return ""
}

// stillValid reports why the current users no longer accept c for name,
// or "": a login checks it once more at its end, so that a reload during
// the login cannot miss it (revokeStale looks only at sessions whose
// credential is recorded).
func (g *Gateway) stillValid(name string, c credential) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return c.revoked(name, g.users[name])
}

// revokeStale ends every live session whose login users (the reloaded
// ones) no longer accept: its user was removed, the password or key it
// logged in with was changed or removed, or the user's mounts changed.
// Each session's filesystem refuses every operation from then on (its
// open uploads abort rather than commit), and the session gets a log
// line, a feed event ("revoked", with the reason) and a goodbye its client
// sees (an FTP 421, a line on an SSH channel's stderr), and ends with
// ReasonRevoked; sessions of unchanged users carry on. It returns how many
// it ended, once they are closed. Goodbyes go out at once, each bounded by
// its frontend, so that clients that read nothing do not add up. As
// tailscale's OnPolicyChange, it judges the sessions by the new rules
// rather than by a diff of the config.
func (g *Gateway) revokeStale(users map[string]*user) int {
	n := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, s := range g.registry.Sessions() {
		c := s.cred.Load()
		name := s.User()
		if s.Parent != nil || c == nil || name == "" {
			continue
		}
		why := c.revoked(name, users[name])
		if why == "" {
			continue
		}
		n++
		s.revoked.Store(&why)
		s.log.Warn("session revoked by the configuration reload", "method", c.method, "reason", why)
		g.feed.Publish(EventSession, name, SessionEvent{Session: s.ID, Protocol: s.Protocol, Remote: s.Remote.String(),
			Event: "revoked", Method: c.method, Reason: why})
		wg.Go(func() { _ = s.CloseWith(ReasonRevoked, "session ended by a configuration reload: "+why) })
	}
	return n
}

// work marks the session at work (Registry.Active) for op on path, and
// returns revokedErr(op, path). sessionFs calls it for every filesystem
// operation and every file read or write.
func (s *Session) work(op, path string) error {
	s.lastWork.Store(s.r.now().UnixNano())
	return s.revokedErr(op, path)
}

// pathOp counts a path operation in progress, for Registry.Active, until
// the function it returns is called.
func (s *Session) pathOp() (done func()) {
	s.pathOps.Add(1)
	return func() { s.pathOps.Add(-1) }
}

// revokedErr returns an error wrapping ErrRevoked, naming op, path and the
// reason, once a reload revoked the session's login; nil before.
func (s *Session) revokedErr(op, path string) error {
	why := s.revoked.Load()
	if why == nil {
		return nil
	}
	return fmt.Errorf("gateway: %s %s for user %s: %w: %s", op, path, s.User(), ErrRevoked, *why)
}
