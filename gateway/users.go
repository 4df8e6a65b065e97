package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/config"
)

// user is a config.User prepared for logins.
type user struct {
	name    string
	hash    []byte         // bcrypt; nil: no password login
	keyWire [][]byte       // the authorized keys' wire encodings, what logins compare
	mounts  []config.Mount // as configured
	sorted  []config.Mount // mounts sorted by path, what a credential records
}

// newUser is a user with what logins compare derived: the keys' wire
// encodings and the mounts sorted by path.
func newUser(name string, hash []byte, keys []ssh.PublicKey, mounts []config.Mount) *user {
	u := &user{name: name, hash: hash, mounts: mounts, sorted: sortedMounts(mounts)}
	for _, k := range keys {
		u.keyWire = append(u.keyWire, k.Marshal())
	}
	return u
}

// authorizes reports whether the key whose wire encoding is wire is one of
// u's authorized keys.
func (u *user) authorizes(wire []byte) bool {
	return slices.ContainsFunc(u.keyWire, func(k []byte) bool { return bytes.Equal(k, wire) })
}

// dummyHash is compared against when the user does not exist, so that an
// unknown name costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("upgate-no-such-user"), bcrypt.DefaultCost)
	return h
})

func loadUsers(cfg *config.Config) (map[string]*user, error) {
	users := make(map[string]*user, len(cfg.Users))
	for i, cu := range cfg.Users {
		var hash []byte
		if cu.PasswordHash != "" {
			hash = []byte(cu.PasswordHash)
		}
		var keys []ssh.PublicKey
		for j, k := range cu.AuthorizedKeys {
			if k.PublicKey == nil {
				return nil, wrapf("users[%d].authorized_keys[%d]: no key", i, j)
			}
			keys = append(keys, k.PublicKey)
		}
		if len(cu.Mounts) == 0 {
			return nil, wrapf("users[%d].mounts: at least one mount is required", i)
		}
		u := newUser(cu.Name, hash, keys, cu.Mounts)
		users[cu.Name] = u
	}
	return users, nil
}

// Login is a verified user and the filesystem their session works in.
type Login struct {
	// User is the login name.
	User string
	// Fs is the user's tree, bound to the context given at login: when
	// that ends, its open files abort.
	Fs afero.Fs
	// Method is "password" or "publickey".
	Method string
}

// LoginPassword verifies a password and returns the user's filesystem,
// bound to ctx (the session's lifetime). sess is the connection's session
// from the accept layer (nil outside it): the login is attached to it,
// checked against the per-user limit and reported to the defender. A wrong
// name or password returns ErrAuthFailed; a user at their limit an error
// wrapping ErrTooManyConnections; an agent that cannot be reached an error
// wrapping backend.ErrUnavailable whose text names the agent and the user.
func (g *Gateway) LoginPassword(ctx context.Context, sess *Session, name, password string) (*Login, error) {
	if err := g.banned(sess, name, "password"); err != nil {
		return nil, err
	}
	u, ok := g.user(name)
	if !ok || u.hash == nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return nil, g.refused(sess, name, "password", "unknown user or no password")
	}
	if err := bcrypt.CompareHashAndPassword(u.hash, []byte(password)); err != nil {
		return nil, g.refused(sess, name, "password", "wrong password")
	}
	return g.login(ctx, sess, u, passwordCredential(u))
}

// banned refuses a login from a banned address: a client that keeps its
// connection open cannot go on guessing once the defender banned it.
func (g *Gateway) banned(sess *Session, name, method string) error {
	if sess == nil || g.defender == nil || !g.defender.Banned(sess.ip) {
		return nil
	}
	g.metrics.Logins.WithLabelValues(sess.Protocol, "banned").Inc()
	sess.log.Warn("login refused", "login", name, "method", method, "reason", "address banned")
	return ErrBanned
}

// refused logs a failed login and reports it to the defender.
func (g *Gateway) refused(sess *Session, name, method, reason string) error {
	log := g.log
	if sess != nil {
		log = sess.log
		g.metrics.Logins.WithLabelValues(sess.Protocol, "failed").Inc()
		if g.defender != nil {
			g.defender.LoginFailed(sess.ip, name)
		}
	}
	log.Info("login refused", "login", name, "method", method, "reason", reason)
	return ErrAuthFailed
}

// HasKey reports whether key is one of the user's authorized keys, without
// logging in: SSH asks this for keys the client only offers.
func (g *Gateway) HasKey(name string, key ssh.PublicKey) bool {
	u, ok := g.user(name)
	if !ok {
		return false
	}
	return u.authorizes(key.Marshal())
}

// LoginKey logs in a user whose possession of key the SSH layer has
// verified (a signature, not just an offer).
func (g *Gateway) LoginKey(ctx context.Context, sess *Session, name string, key ssh.PublicKey) (*Login, error) {
	if err := g.banned(sess, name, "publickey"); err != nil {
		return nil, err
	}
	u, ok := g.user(name)
	if !ok || !g.HasKey(name, key) {
		return nil, g.refused(sess, name, "publickey", "key not authorized")
	}
	return g.login(ctx, sess, u, keyCredential(u, key))
}

// loginTimeout bounds the agent round trip a login makes.
const loginTimeout = 15 * time.Second

// login reaches the user's agent, makes sure the user's root exists there,
// and returns the filesystem. cred is what the login was verified with: a
// reload that no longer accepts it ends the session (revoke.go).
func (g *Gateway) login(ctx context.Context, sess *Session, u *user, cred credential) (*Login, error) {
	method := cred.method
	log := g.log
	if sess != nil {
		if err := g.registry.setUser(sess, u.name); err != nil {
			g.metrics.Logins.WithLabelValues(sess.Protocol, "limit").Inc()
			sess.log.Warn("login refused", "login", u.name, "method", method, "err", err)
			return nil, err
		}
		sess.cred.Store(&cred)
		log = sess.log
	}
	// fail undoes what a login that does not complete left on the session:
	// a reload must not revoke (and bid goodbye to) a login that never was.
	fail := func(result string, err error) (*Login, error) {
		if sess != nil {
			sess.cred.Store(nil)
			g.metrics.Logins.WithLabelValues(sess.Protocol, result).Inc()
		}
		return nil, err
	}
	if sess == nil {
		log = log.With("user", u.name)
	}
	var fsys afero.Fs
	var err error
	if g.fsHook != nil {
		fsys, err = g.fsHook(ctx, u.name)
	} else {
		fsys, err = g.userFs(ctx, u, log, sess != nil && sess.postOpens)
	}
	if err != nil {
		return fail("agent_error", err)
	}
	// The session's own view of its uploads in progress (backend.View):
	// atomic for others, POSIX for itself.
	var viewOpts []backend.ViewOption
	if sess != nil && sess.readersFollow {
		viewOpts = append(viewOpts, backend.ReadersFollowSaves())
	}
	fsys = backend.NewView(fsys, viewOpts...)
	if why := g.stillValid(u.name, cred); why != "" {
		// A reload took the credential away during the login.
		log.Info("login refused", "method", method, "reason", why)
		return fail("failed", ErrAuthFailed)
	}
	if sess != nil {
		if g.defender != nil {
			g.defender.LoginSucceeded(sess.ip, u.name)
		}
		fsys = &sessionFs{Fs: fsys, sess: sess, metrics: g.metrics, files: g.files, tr: g.xfers}
		g.metrics.Logins.WithLabelValues(sess.Protocol, "ok").Inc()
		g.publishLogin(sess, method)
	}
	log.Info("login", "method", method, "mounts", len(u.mounts))
	return &Login{User: u.name, Fs: fsys, Method: method}, nil
}

// userFs builds the user's tree: one GRPCFs per mount, each reached now
// (so an unreachable agent is reported at login) with its root created,
// composed by a MountFs unless the only mount is at "/". postOpens is
// backend.Options.PostUploadOpens (Protocol.PostUploadOpens).
func (g *Gateway) userFs(ctx context.Context, u *user, log *slog.Logger, postOpens bool) (afero.Fs, error) {
	mounts := make([]backend.Mount, 0, len(u.mounts))
	for _, m := range u.mounts {
		ictx, cancel := context.WithTimeout(ctx, loginTimeout)
		top, target, err := g.agents.FS(ictx, m.Agent, u.name, backend.Options{CallTimeout: loginTimeout})
		if err != nil {
			cancel()
			return nil, wrapf("%w", err)
		}
		if m.Root != "" {
			err = top.MkdirAll(m.Root, 0o755)
		} else {
			_, err = top.Stat("/")
		}
		cancel()
		if err != nil {
			log.Warn("login failed: agent", "agent", m.Agent, "address", target, "mount", m.Path, "err", err)
			if errors.Is(err, backend.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("gateway: prepare root of user %s on agent %s: %w", u.name, m.Agent, err)
		}
		gfs, _, err := g.agents.FS(ctx, m.Agent, u.name, backend.Options{Root: m.Root, CallTimeout: time.Minute, PostUploadOpens: postOpens})
		if err != nil {
			return nil, wrapf("%w", err)
		}
		var fsys afero.Fs = gfs
		if m.ReadOnly {
			fsys = backend.ReadOnly(fsys)
		}
		mounts = append(mounts, backend.Mount{Path: m.Path, Fs: fsys})
	}
	if len(mounts) == 1 && mounts[0].Path == "/" {
		return mounts[0].Fs, nil
	}
	return backend.NewMountFs(mounts)
}
