package ftp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// driver is ftpserverlib's MainDriver: settings, greetings, logins, TLS
// and the passive-listener hook.
type driver struct{ s *Server }

var (
	_ ftpserver.MainDriver                              = (*driver)(nil)
	_ ftpserver.MainDriverExtensionClientPassiveWrapper = (*driver)(nil)
	_ ftpserver.MainDriverExtensionActiveAddrChecker    = (*driver)(nil)
	_ ftpserver.MainDriverExtensionReplyCode            = (*driver)(nil)
	_ ftpserver.MainDriverExtensionPostAuthMessage      = (*driver)(nil)
)

func (d *driver) GetSettings() (*ftpserver.Settings, error) {
	s := d.s
	st := &ftpserver.Settings{
		Listener:                 s.lis,
		PublicHost:               s.cfg.PublicHost,
		PassiveTransferPortRange: s.pasv,
		// The gateway's idle timeout applies; ftpserverlib's own is off.
		IdleTimeout:             -1,
		ConnectionTimeout:       30,
		ActiveTransferPortNon20: true,
		DisableActiveMode:       s.cfg.DisableActiveMode,
		LoginTimeout:            max(s.cfg.LoginTimeout, 0),
		EnableHASH:              true,
		// Data moves byte for byte in TYPE A too, as vsftpd's defaults
		// (ascii_upload_enable and ascii_download_enable off) do: a PHP
		// file with CRLF or a binary sent in the wrong mode lands as
		// sent. SIZE then answers in TYPE A as well.
		DisableASCIIConversion: true,
		DefaultTransferType:    ftpserver.TransferTypeBinary,
		Banner:                 "upgate",
	}
	if s.cfg.PassivePromiscuous {
		st.PasvConnectionsCheck = ftpserver.IPMatchDisabled
	}
	switch {
	case s.cfg.Implicit:
		st.TLSRequired = ftpserver.ImplicitEncryption
	case s.cfg.TLSRequired:
		st.TLSRequired = ftpserver.MandatoryEncryption
	}
	return st, nil
}

func (d *driver) ClientConnected(cc ftpserver.ClientContext) (_ string, err error) {
	defer recoveredIn(d.s.log, "connect", &err)
	sess, ok := d.s.gw.Registry().Lookup(cc.LocalAddr(), cc.RemoteAddr())
	if !ok {
		// Not from the accept layer: refuse rather than serve untracked.
		return "", errors.New("421 connection not registered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{cc: cc, sess: sess, ctx: ctx, cancel: cancel}
	cc.SetExtra(c)
	if r, ok := cc.(ftpserver.ClientContextReplier); ok {
		// A session the gateway ends with a reason (a reload revoked its
		// login) says it in a 421 first, as RFC 959 allows at any time.
		sess.SetGoodbye(func(msg string) {
			if err := r.Reply(ftpserver.StatusServiceNotAvailable, capitalize(msg)+".", goodbyeTimeout); err != nil {
				sess.Logger().Info("goodbye not sent", "err", err)
			}
		})
	}
	d.s.mu.Lock()
	d.s.clients[cc.ID()] = c
	d.s.mu.Unlock()
	return "upgate FTP ready", nil
}

func (d *driver) ClientDisconnected(cc ftpserver.ClientContext) {
	var panicked error
	defer recoveredIn(d.s.log, "disconnect", &panicked)
	d.s.mu.Lock()
	c := d.s.clients[cc.ID()]
	delete(d.s.clients, cc.ID())
	d.s.mu.Unlock()
	if c != nil {
		c.cancel() // open files' streams end: unfinished uploads abort
	}
}

func clientOf(cc ftpserver.ClientContext) (*client, error) {
	c, ok := cc.Extra().(*client)
	if !ok {
		return nil, errors.New("session not registered")
	}
	return c, nil
}

func (d *driver) AuthUser(cc ftpserver.ClientContext, user, pass string) (_ ftpserver.ClientDriver, err error) {
	c, err := clientOf(cc)
	if err != nil {
		return nil, err
	}
	defer recovered(c, "login", &err)
	login, err := d.s.gw.LoginPassword(c.ctx, c.sess, user, pass)
	if err != nil {
		return nil, err // PostAuthMessage words it, ReplyCode codes it
	}
	c.sess.SetOp("idle")
	return &clientDriver{Fs: login.Fs, c: c, log: c.sess.Logger(), checkAllo: d.s.cfg.CheckAlloSize}, nil
}

// ReplyCode picks the reply for an error from the user's filesystem, so
// that the code says what a client should do about it:
//
//   - at login (default 530): 421 (service not available, try later) for
//     an agent that cannot be reached, a disk too full to create the
//     user's root or the user's session limit, so no client takes it for
//     a wrong password; 530 else;
//   - an agent that cannot be reached, too many open files (the user's
//     or the agent's limit), an I/O error (EIO: a read, a listing or a
//     commit that failed on the agent's disk, as vsftpd's "451 Failure
//     writing to local file"), or a STOR whose size differs from what its
//     ALLO announced: 451 (local error, try again);
//   - a full disk or quota: 552 (exceeded storage allocation);
//   - anything else (missing file, permission denied, exists): the
//     library's 550, 450 or 530, or 553 for an upload that cannot open
//     its file (the fork's patch 29, vsftpd's code).
//
// The reply's text is the error's, which names the path and the agent.
func (d *driver) ReplyCode(_ ftpserver.ClientContext, err error, code int) int {
	return replyCode(err, code)
}

// replyCode is ReplyCode's rule, for the replies the driver writes itself
// (SITE).
func replyCode(err error, code int) int {
	full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
	switch {
	case code == ftpserver.StatusNotLoggedIn:
		if errors.Is(err, backend.ErrUnavailable) || full || errors.Is(err, gateway.ErrTooManyConnections) {
			return ftpserver.StatusServiceNotAvailable
		}
		return code // PASS has no other failure reply
	case errors.Is(err, backend.ErrUnavailable), errors.Is(err, ErrShortUpload), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.EIO):
		return ftpserver.StatusLocalError
	case full:
		return ftpserver.StatusActionAborted
	}
	return code
}

// PostAuthMessage is the text of the reply to PASS. A failed login says
// why in the user's terms ("Login incorrect.", "agent web for user alice
// unreachable: ...") rather than ftpserverlib's "Authentication error: ...".
func (d *driver) PostAuthMessage(_ ftpserver.ClientContext, _ string, err error) string {
	switch {
	case err == nil:
		return "Login successful."
	case errors.Is(err, gateway.ErrAuthFailed):
		return "Login incorrect."
	}
	return err.Error()
}

func (d *driver) GetTLSConfig() (*tls.Config, error) {
	if d.s.cfg.TLS == nil {
		return nil, errors.New("TLS is not configured")
	}
	return d.s.cfg.TLS, nil
}

// WrapClientPassiveListener puts the passive port cc asked for through
// the accept layer: its data connection becomes a child session of cc's
// session and of no other, whichever sessions share the client's address
// (a NAT, several IDE connections). A session has one passive port at a
// time: ftpserverlib closes the previous one first, and a second one
// still open is refused.
func (d *driver) WrapClientPassiveListener(cc ftpserver.ClientContext, lis net.Listener) (net.Listener, error) {
	c, err := clientOf(cc)
	if err != nil {
		return nil, err
	}
	if c.sess.User() == "" {
		return nil, errors.New("log in first")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pasv != nil {
		return nil, fmt.Errorf("this session still holds passive port %d: one per session", c.pasv.port)
	}
	timeout := max(d.s.cfg.PassiveTimeout, 0)
	dl := d.s.gw.NewDataListener(dataProtocol, lis, c.sess, gateway.DataOptions{AnyAddress: d.s.cfg.PassivePromiscuous, UnusedTimeout: timeout})
	c.pasv = &passiveListener{Listener: dl, c: c, port: addrPort(lis.Addr())}
	return c.pasv, nil
}

// passiveListener is a session's passive port; closing it frees the
// session's slot.
type passiveListener struct {
	net.Listener
	c    *client
	port int
	once sync.Once
}

// SetDeadline passes ftpserverlib's accept deadline to the gateway's
// data listener.
func (p *passiveListener) SetDeadline(t time.Time) error {
	if ds, ok := p.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		return ds.SetDeadline(t)
	}
	return nil
}

func (p *passiveListener) Close() error {
	p.once.Do(func() {
		p.c.mu.Lock()
		if p.c.pasv == p {
			p.c.pasv = nil
		}
		p.c.mu.Unlock()
	})
	return p.Listener.Close()
}

// CheckActiveAddr refuses PORT and EPRT to a privileged port (below 1024)
// and to any port upgate itself listens on: a client on the gateway's host
// could otherwise make the gateway send an uploaded file, as a request, to
// the admin API, an SSH port or another session's passive port.
// ftpserverlib has already refused any address but the control
// connection's peer.
func (d *driver) CheckActiveAddr(_ ftpserver.ClientContext, addr *net.TCPAddr) error {
	port := addr.Port
	switch {
	case port < 1024:
		return fmt.Errorf("port %d is below 1024: privileged ports are refused", port)
	case d.s.gw.OwnPort(port):
		return fmt.Errorf("port %d is one of upgate's own listening ports", port)
	case d.s.inPassiveRange(port) || d.s.passivePortInUse(port):
		return fmt.Errorf("port %d is one of upgate's passive data ports", port)
	}
	return nil
}

// inPassiveRange reports whether port is in the configured passive range.
func (s *Server) inPassiveRange(port int) bool {
	r, ok := s.pasv.(ftpserver.PortRange)
	return ok && r.Start <= port && port <= r.End
}

// passivePortInUse reports whether a session holds port as its passive
// port (with no range configured, the OS picks them anywhere).
func (s *Server) passivePortInUse(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clients {
		c.mu.Lock()
		held := c.pasv != nil && c.pasv.port == port
		c.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}

// addrPort returns a TCP address's port, or 0.
func addrPort(a net.Addr) int {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return int(ap.Port())
	}
	return 0
}

// goodbyeTimeout bounds writing a goodbye to a client that reads nothing.
const goodbyeTimeout = 2 * time.Second

// recovered turns a panic in a callback ftpserverlib runs into an error,
// logging the stack: a bug in one session must not take the server down.
// ftpserverlib recovers panics in its command handlers itself, but shows
// the panic's text to the client and logs no stack; ClientConnected and
// ClientDisconnected it does not cover at all. Every callback defers
// recovered (or recoveredIn before the session is known), and the client
// gets the command's failure reply ("internal error during write").
func recovered(c *client, op string, err *error) {
	if r := recover(); r != nil {
		c.sess.Logger().Error("panic in FTP handler", "op", op, "panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error during %s", op)
	}
}

// recoveredIn is recovered for callbacks without a session, logging to
// log.
func recoveredIn(log *slog.Logger, op string, err *error) {
	if r := recover(); r != nil {
		log.Error("panic in FTP handler", "op", op, "panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error during %s", op)
	}
}
