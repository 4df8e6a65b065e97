// Package ftp is upgate's FTP(S) frontend: ftpserverlib's MainDriver and
// ClientDriver over the gateway. The control listener is the gateway's
// accept layer (Settings.Listener) and each passive data listener is
// wrapped by it for the one session whose PASV opened it
// (WrapClientPassiveListener, a patch of the fork), so keepalive,
// TCP_USER_TIMEOUT, limits and the session registry apply to both. Logins
// go through the gateway; each client's files are the user's backend
// filesystem.
package ftp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
)

// Config configures a Server. The zero value serves plain FTP with passive
// ports chosen by the OS.
type Config struct {
	// PassivePorts is the passive data port range. The zero PortRange
	// means any free port.
	PassivePorts config.PortRange
	// PublicHost is the IPv4 address announced in PASV replies. Empty
	// means the address the client connected to.
	PublicHost string
	// TLS, if non-nil, enables explicit FTPS (AUTH TLS) and protected data
	// channels (PROT P). Its MinVersion is raised to TLS 1.2.
	TLS *tls.Config
	// TLSRequired refuses USER before AUTH TLS and clear data channels.
	TLSRequired bool
	// Implicit serves implicit FTPS: TLS from the first byte on the
	// control connection and on every data connection. Needs TLS.
	Implicit bool
	// DisableActiveMode refuses PORT and EPRT.
	DisableActiveMode bool
	// CheckAlloSize commits a STOR that ALLO announced only if exactly
	// that size arrived (451 otherwise). Off, ALLO is accepted and
	// ignored, as vsftpd does.
	CheckAlloSize bool
	// PassivePromiscuous admits a passive data connection from any client
	// address. False refuses one from another IP than its control
	// connection's (vsftpd's pasv_promiscuous=NO).
	PassivePromiscuous bool
	// PassiveTimeout frees a passive port no transfer command used within
	// this long of the PASV. Zero means 15 s; negative means no bound.
	PassiveTimeout time.Duration
	// LoginTimeout bounds how long a control connection may stay without
	// logging in, NOOPs or not: it then gets 421 and is closed. Zero means
	// 30 s; negative means no bound but the gateway's idle timeout.
	LoginTimeout time.Duration
	// Logger receives the frontend's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Protocol is how FTP control connections present themselves to the
// accept layer: every byte a client sends is a command, so reads are
// activity, refusals are 421 replies (lftp retries on "Too many
// connections"), and a STOR's open does not wait for the agent when the
// session's last upload went to the same directory
// (gateway.Protocol.PostUploadOpens).
func Protocol() gateway.Protocol {
	return gateway.Protocol{
		Name:            "ftp",
		ReadIsActivity:  true,
		PostUploadOpens: true,
		Refuse: func(c net.Conn, reason string) {
			fmt.Fprintf(c, "421 %s\r\n", capitalize(reason))
		},
	}
}

// ImplicitProtocol is Protocol for implicit FTPS: a refusal cannot be
// written in clear to a client that starts with a TLS handshake, so the
// connection is just closed.
func ImplicitProtocol() gateway.Protocol {
	return gateway.Protocol{Name: "ftps", ReadIsActivity: true, PostUploadOpens: true}
}

// dataProtocol is FTP's data connections.
var dataProtocol = gateway.Protocol{Name: "ftp-data"}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// Defaults for the zero Config.
const (
	DefaultPassiveTimeout = 15 * time.Second
	DefaultLoginTimeout   = 30 * time.Second
)

// Gateway is what the FTP frontend needs from the gateway, declared here
// where it is used; *gateway.Gateway implements it. A test may embed a
// real gateway and replace one method (logins that hand out another
// filesystem, say).
type Gateway interface {
	// Registry finds the session the accept layer registered for each
	// control connection (ftpserverlib hides the connection itself).
	Registry() *gateway.Registry
	// LoginPassword verifies USER/PASS and returns the user's filesystem
	// bound to ctx, attached to sess (limits, defender, the sessions
	// view).
	LoginPassword(ctx context.Context, sess *gateway.Session, name, password string) (*gateway.Login, error)
	// NewDataListener runs the accept layer on a passive data listener
	// for the control session parent.
	NewDataListener(proto gateway.Protocol, lis net.Listener, parent *gateway.Session, opts gateway.DataOptions) net.Listener
	// OwnPort reports whether the gateway's process listens on port, so
	// that active mode never connects a client to it.
	OwnPort(port int) bool
}

// Server serves FTP for a gateway.
type Server struct {
	gw   Gateway
	cfg  Config
	log  *slog.Logger
	pasv ftpserver.PasvPortGetter

	// mu guards lis, srv and clients.
	mu      sync.Mutex
	lis     net.Listener
	srv     *ftpserver.FtpServer
	clients map[uint32]*client
}

// New returns a server over gw (a *gateway.Gateway); Serve starts it.
func New(gw Gateway, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{gw: gw, cfg: cfg, log: log.With("component", "ftp"), clients: make(map[uint32]*client)}
	if r := cfg.PassivePorts; !r.IsZero() {
		if r.Len() == 0 || r.First == 0 {
			return nil, fmt.Errorf("ftp: passive ports %d-%d: want 1 <= A <= B", r.First, r.Last)
		}
		s.pasv = ftpserver.PortRange{Start: int(r.First), End: int(r.Last)}
	}
	if cfg.PublicHost != "" {
		if ip := net.ParseIP(cfg.PublicHost); ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("ftp: public host %q: want an IPv4 address", cfg.PublicHost)
		}
	}
	if cfg.TLS != nil {
		c := cfg.TLS.Clone()
		c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
		s.cfg.TLS = c
	}
	if cfg.Implicit && cfg.TLS == nil {
		return nil, errors.New("ftp: implicit FTPS needs a TLS config")
	}
	if s.cfg.PassiveTimeout == 0 {
		s.cfg.PassiveTimeout = DefaultPassiveTimeout
	}
	if s.cfg.LoginTimeout == 0 {
		s.cfg.LoginTimeout = DefaultLoginTimeout
	}
	return s, nil
}

// Serve serves FTP on lis, which should come from the gateway's Listen
// with Protocol(). It returns nil after Close or the gateway's Shutdown,
// once every client it served has ended (their sessions are the
// gateway's to close), transfers included.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.cfg.Implicit {
		// ftpserverlib applies implicit TLS only to listeners it makes.
		lis = tls.NewListener(lis, s.cfg.TLS)
	}
	s.lis = lis
	s.srv = ftpserver.NewFtpServer(&driver{s: s})
	s.srv.Logger = s.log
	srv := s.srv
	s.mu.Unlock()
	if err := srv.Listen(); err != nil {
		return fmt.Errorf("ftp: %w", err)
	}
	s.log.Info("serving FTP", "addr", lis.Addr().String(), "ftps", s.cfg.TLS != nil)
	err := srv.Serve()
	srv.Wait() // the fork's: every client goroutine, transfers included
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops accepting; Serve returns once the clients it served are
// gone. Live sessions are the gateway's to close (Shutdown drains them).
func (s *Server) Close() error {
	s.mu.Lock()
	lis := s.lis
	s.mu.Unlock()
	if lis == nil {
		return nil
	}
	return lis.Close()
}

// client is the frontend's state for one control connection.
type client struct {
	cc     ftpserver.ClientContext
	sess   *gateway.Session
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards pasv and allo. Lock order: Server.mu, then client.mu.
	mu   sync.Mutex
	pasv *passiveListener // the session's passive port, nil if none
	allo int64            // the size ALLO announced for the next STOR, 0 if none
}

// takeAllo returns and forgets the size ALLO announced.
func (c *client) takeAllo() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.allo
	c.allo = 0
	return n
}

// absPath resolves name against the client's working directory, as
// ftpserverlib does for the commands it handles itself.
func (c *client) absPath(name string) string {
	if strings.HasPrefix(name, "/") {
		return path.Clean(name)
	}
	return path.Join(c.cc.Path(), name)
}
