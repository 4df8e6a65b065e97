// Package webdav is upgate's WebDAV frontend: golang.org/x/net/webdav's
// handler over each user's backend filesystem, behind HTTP Basic
// authentication through the gateway, on a listener from the gateway's
// accept layer (keepalive, TCP_USER_TIMEOUT, connection limits, the idle
// timeout, PROXY protocol, the defender).
//
// Sessions and logins. One TCP connection is one gateway session, as an
// FTP control connection or an SSH connection is. HTTP sends credentials
// with every request: the first request of a connection logs in through
// the gateway (bcrypt, the defender, the per-user limit, the user's
// agent), and later requests on that connection that bring the same
// credentials reuse the login, compared as an HMAC under a key of this
// process (the password is never kept). A login is checked again after
// Config.LoginTTL. Only HTTP/1.1 is served: one request at a time per
// connection keeps one session one login.
//
// Uploads. A PUT is one upload through the gateway's filesystem, so it is
// atomic for others: other sessions see the old file (or none) until the
// whole body has arrived and the file is committed. A body that ends early
// (Content-Length not reached, a chunked body without its last chunk),
// fails or moves no byte for Config.ProgressTimeout aborts the upload: the
// old file stays. A COPY or MOVE onto an existing file replaces it the
// same way, without the delete-then-write window RFC 4918 describes; one
// onto a collection (or a collection's onto a file) sets the destination
// aside until it is done, and puts it back if it fails.
//
// Times. A PUT's X-OC-Mtime header (seconds since 1970, as ownCloud,
// Nextcloud and rclone's webdav backend send it) sets the file's mtime
// when the upload commits, and the reply says "X-OC-Mtime: accepted".
// So does a COPY's or MOVE's, which rclone sends with the source's time,
// on a destination that is a file (a copy's commits with it; a moved file
// gets it once moved).
// PROPPATCH sets the mtime from {DAV:}lastmodified (seconds, ownCloud's
// spelling, which rclone uses to set a time later) and from
// {urn:schemas-microsoft-com:}Win32LastModifiedTime (Windows Explorer).
// No other property is stored: there is no dead-property store.
//
// Locks. LOCK and UNLOCK work as RFC 4918 class 2 asks, which Finder and
// Windows Explorer need to write: each user has an in-memory lock table in
// this process (locks are lost on restart and not shared between
// replicas), at most Config.MaxLocks locks, none longer than
// Config.MaxLockDuration.
package webdav

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/upgate/upgate/gateway"
)

// Config configures a Server. The zero value serves plain HTTP with the
// defaults below.
type Config struct {
	// TLS, if non-nil, serves HTTPS. Its MinVersion is raised to TLS 1.2
	// and its ALPN list is set to http/1.1 only. Nil serves plain HTTP.
	TLS *tls.Config
	// HeaderTimeout bounds the TLS handshake and each request's line and
	// headers: a client that sends them slower is disconnected
	// (slowloris). Zero means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// ProgressTimeout aborts a request whose body or response moves no
	// byte for this long: an upload then aborts. Zero means
	// DefaultProgressTimeout; negative means no bound.
	ProgressTimeout time.Duration
	// KeepAliveTimeout closes a connection that waits this long for its
	// next request (HTTP keep-alive); clients open a new one when they
	// need it. Zero means DefaultKeepAliveTimeout.
	KeepAliveTimeout time.Duration
	// LoginTTL is how long a connection keeps a verified login before the
	// password is checked again (bcrypt), so that a password changed by a
	// reload stops working on connections kept alive. Zero means
	// DefaultLoginTTL.
	LoginTTL time.Duration
	// MaxHeaderBytes bounds a request's line and headers; a larger one is
	// answered 431. Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxLocks is the most WebDAV locks one user may hold at once; a LOCK
	// beyond it is answered 503. Zero means DefaultMaxLocks.
	MaxLocks int
	// MaxLockDuration caps every lock's timeout, "Infinite" included: a
	// client that vanishes leaves its locks for at most this long. Zero
	// means DefaultMaxLockDuration.
	MaxLockDuration time.Duration
	// Logger receives the frontend's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for the zero Config.
const (
	DefaultHeaderTimeout    = 30 * time.Second
	DefaultProgressTimeout  = 2 * time.Minute
	DefaultKeepAliveTimeout = 2 * time.Minute
	DefaultLoginTTL         = 5 * time.Minute
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultMaxLocks         = 1000
	DefaultMaxLockDuration  = time.Hour
	// maxXMLBody bounds the body of every request but PUT (PROPFIND,
	// PROPPATCH and LOCK carry XML): a larger one is answered 413.
	maxXMLBody = 1 << 20
)

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.ProgressTimeout == 0 {
		c.ProgressTimeout = DefaultProgressTimeout
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.LoginTTL <= 0 {
		c.LoginTTL = DefaultLoginTTL
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxLocks <= 0 {
		c.MaxLocks = DefaultMaxLocks
	}
	if c.MaxLockDuration <= 0 {
		c.MaxLockDuration = DefaultMaxLockDuration
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TLS != nil {
		t := c.TLS.Clone()
		t.MinVersion = max(t.MinVersion, tls.VersionTLS12)
		t.NextProtos = []string{"http/1.1"}
		c.TLS = t
	}
	return c
}

// Gateway is what the WebDAV frontend needs from the gateway, declared
// here where it is used; *gateway.Gateway implements it.
type Gateway interface {
	// LoginPassword verifies HTTP Basic credentials and returns the
	// user's filesystem bound to ctx (the connection's lifetime),
	// attached to sess: the per-user limit, the defender and the
	// sessions view see it. A wrong name or password is
	// gateway.ErrAuthFailed.
	LoginPassword(ctx context.Context, sess *gateway.Session, name, password string) (*gateway.Login, error)
}

// Protocol is how WebDAV connections present themselves to the accept
// layer: every byte a client sends is a request, so reads are activity.
// Over plain HTTP a refusal (a connection limit, a banned address) is an
// HTTP 503 with the reason; over TLS it cannot be written before the
// handshake, so the connection is just closed.
func Protocol(overTLS bool) gateway.Protocol {
	p := gateway.Protocol{Name: "webdav", ReadIsActivity: true}
	if !overTLS {
		p.Refuse = refuse
	}
	return p
}

// refuse answers a connection the accept layer will not serve with a 503
// that says why.
func refuse(c net.Conn, reason string) {
	body := "upgate: " + reason + "\n"
	_, _ = fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nRetry-After: %s\r\nContent-Length: %d\r\n\r\n%s", retryAfter, len(body), body)
}

// Server serves WebDAV for a gateway. Create it with New.
type Server struct {
	gw    Gateway
	cfg   Config
	log   *slog.Logger
	key   []byte // HMAC key for the credentials a connection logged in with
	locks *lockSystems

	// mu guards lis and conns.
	mu    sync.Mutex
	lis   net.Listener
	conns map[net.Conn]*conn
	wg    sync.WaitGroup // one count per connection, from StateNew to its end
}

// New returns a server over gw (a *gateway.Gateway); Serve starts it.
func New(gw Gateway, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("webdav: credentials key: %w", err)
	}
	return &Server{
		gw: gw, cfg: cfg, log: cfg.Logger.With("component", "webdav"), key: key,
		locks: newLockSystems(cfg.MaxLocks, cfg.MaxLockDuration),
		conns: make(map[net.Conn]*conn),
	}, nil
}

// Serve serves WebDAV on lis, which should come from the gateway's Listen
// with Protocol(cfg.TLS != nil); it adds TLS when Config.TLS is set. It
// returns nil after Close or the gateway's Shutdown, once every
// connection it accepted has ended.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.cfg.TLS != nil {
		lis = tls.NewListener(lis, s.cfg.TLS)
	}
	s.lis = lis
	s.mu.Unlock()
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.HeaderTimeout,
		IdleTimeout:       s.cfg.KeepAliveTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		// A non-nil empty map turns HTTP/2 off (see webdav.go's doc).
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext:  s.connContext,
		ConnState:    s.connState,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelInfo),
	}
	s.log.Info("serving WebDAV", "addr", lis.Addr().String(), "https", s.cfg.TLS != nil)
	err := hs.Serve(lis)
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("webdav: serve: %w", err)
}

// Close stops accepting. Live sessions are the gateway's to close
// (Shutdown drains them); Serve returns once they are gone.
func (s *Server) Close() error {
	s.mu.Lock()
	lis := s.lis
	s.mu.Unlock()
	if lis == nil {
		return nil
	}
	return lis.Close()
}

// retryAfter is the Retry-After (seconds) of a 503: an agent that cannot
// be reached, a limit.
const retryAfter = "10"
