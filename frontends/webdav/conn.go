package webdav

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/upgate/upgate/gateway"
)

// conn is one client connection's state: its gateway session and the
// login its requests share. http.Server serves a connection's requests
// one at a time (HTTP/1.1 only), from ConnContext to ConnState's
// StateClosed.
type conn struct {
	sess   *gateway.Session // nil: the connection did not come from the accept layer
	ctx    context.Context  // ends when the connection does: its login's open files abort
	cancel context.CancelFunc

	// mu guards login, endLogin, cred and verified.
	mu       sync.Mutex
	login    *gateway.Login
	endLogin context.CancelFunc // ends login's filesystem (its agent stream)
	cred     []byte             // HMAC of the name and password login was verified with
	verified time.Time          // when the gateway verified them
}

// connKey is the context key of a request's *conn.
type connKey struct{}

// connContext registers a new connection (http.Server.ConnContext).
func (s *Server) connContext(ctx context.Context, nc net.Conn) context.Context {
	c := &conn{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	raw := nc
	if t, ok := nc.(*tls.Conn); ok {
		raw = t.NetConn()
	}
	if gc, ok := raw.(*gateway.Conn); ok {
		c.sess = gc.Session()
	}
	s.mu.Lock()
	s.conns[nc] = c
	s.mu.Unlock()
	return context.WithValue(ctx, connKey{}, c)
}

// connState counts connections for Serve and ends a closed connection's
// context (http.Server.ConnState). StateNew always follows connContext.
func (s *Server) connState(nc net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.wg.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.mu.Lock()
		c, ok := s.conns[nc]
		delete(s.conns, nc)
		s.mu.Unlock()
		if ok {
			c.cancel()
			s.wg.Done()
		}
	}
}

// errNoCredentials is a request without HTTP Basic credentials: clients
// send their first request so and retry with them after the 401.
var errNoCredentials = errors.New("webdav: credentials required (HTTP Basic)")

// authenticate returns the connection's login for the request's HTTP
// Basic credentials. The connection keeps the login it made for them: a
// request that brings the same name and password within Config.LoginTTL
// reuses it without bcrypt; other credentials, or older ones, log in
// again through the gateway, which attaches the session to that user.
// Errors: errNoCredentials, or the gateway's (gateway.ErrAuthFailed,
// gateway.ErrBanned, a limit, an unreachable agent).
func (s *Server) authenticate(r *http.Request, c *conn) (*gateway.Login, error) {
	name, password, ok := r.BasicAuth()
	if !ok {
		return nil, errNoCredentials
	}
	cred := s.credential(name, password)
	now := time.Now()
	c.mu.Lock()
	if c.login != nil && hmac.Equal(c.cred, cred) && now.Sub(c.verified) < s.cfg.LoginTTL {
		l := c.login
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	// Each login's filesystem lives until the connection ends or a newer
	// login replaces it: a connection kept alive past LoginTTL does not
	// pile up agent streams. Requests are served one at a time, so none
	// is using the old one now.
	lctx, end := context.WithCancel(c.ctx)
	l, err := s.gw.LoginPassword(lctx, c.sess, name, password)
	if err != nil {
		end()
		return nil, err
	}
	c.mu.Lock()
	old := c.endLogin
	c.login, c.endLogin, c.cred, c.verified = l, end, cred, now
	c.mu.Unlock()
	if old != nil {
		old()
	}
	return l, nil
}

// credential is the HMAC of a name and password under the server's key:
// what a connection remembers of the credentials it logged in with.
func (s *Server) credential(name, password string) []byte {
	m := hmac.New(sha256.New, s.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	m.Write(n[:])
	m.Write([]byte(name))
	m.Write([]byte(password))
	return m.Sum(nil)
}
