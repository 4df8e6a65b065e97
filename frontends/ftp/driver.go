package ftp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"syscall"

	ftpserver "github.com/fclairamb/ftpserverlib"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// driver is ftpserverlib's MainDriver: settings, greetings, logins, TLS
// and the passive-listener hook.
type driver struct{ s *Server }

var (
	_ ftpserver.MainDriver                         = (*driver)(nil)
	_ ftpserver.MainDriverExtensionPassiveWrapper  = (*driver)(nil)
	_ ftpserver.MainDriverExtensionReplyCode       = (*driver)(nil)
	_ ftpserver.MainDriverExtensionPostAuthMessage = (*driver)(nil)
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
		EnableHASH:              true,
		DefaultTransferType:     ftpserver.TransferTypeBinary,
		Banner:                  "upgate",
	}
	switch {
	case s.cfg.Implicit:
		st.TLSRequired = ftpserver.ImplicitEncryption
	case s.cfg.TLSRequired:
		st.TLSRequired = ftpserver.MandatoryEncryption
	}
	return st, nil
}

func (d *driver) ClientConnected(cc ftpserver.ClientContext) (string, error) {
	sess, ok := d.s.gw.Registry().Lookup(cc.LocalAddr(), cc.RemoteAddr())
	if !ok {
		// Not from the accept layer: refuse rather than serve untracked.
		return "", errors.New("421 connection not registered")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{cc: cc, sess: sess, ctx: ctx, cancel: cancel}
	cc.SetExtra(c)
	d.s.mu.Lock()
	d.s.clients[cc.ID()] = c
	d.s.mu.Unlock()
	return "upgate FTP ready", nil
}

func (d *driver) ClientDisconnected(cc ftpserver.ClientContext) {
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

func (d *driver) AuthUser(cc ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	c, err := clientOf(cc)
	if err != nil {
		return nil, err
	}
	login, err := d.s.gw.LoginPassword(c.ctx, c.sess, user, pass)
	if err != nil {
		return nil, err // PostAuthMessage words it, ReplyCode codes it
	}
	c.sess.SetOp("idle")
	return &clientDriver{Fs: login.Fs, c: c, log: c.sess.Logger()}, nil
}

// ReplyCode picks the reply for an error from the user's filesystem, so
// that the code says what a client should do about it:
//
//   - at login (default 530): 421 (service not available, try later) for
//     an agent that cannot be reached, a disk too full to create the
//     user's root or the user's session limit, so no client takes it for
//     a wrong password; 530 else;
//   - an agent that cannot be reached: 451 (local error, try again);
//   - a full disk or quota: 552 (exceeded storage allocation);
//   - anything else (missing file, permission denied, exists): the
//     library's 550, 450 or 530.
//
// The reply's text is the error's, which names the path and the agent.
func (d *driver) ReplyCode(_ ftpserver.ClientContext, err error, code int) int {
	full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
	switch {
	case code == ftpserver.StatusNotLoggedIn:
		if errors.Is(err, backend.ErrUnavailable) || full || errors.Is(err, gateway.ErrTooManyConnections) {
			return ftpserver.StatusServiceNotAvailable
		}
		return code // PASS has no other failure reply
	case errors.Is(err, backend.ErrUnavailable):
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

// WrapPassiveListener puts passive data connections through the accept
// layer. ftpserverlib does not say which client a listener is for, so each
// connection is attached to a control session from the same address,
// preferring one with a transfer pending.
func (d *driver) WrapPassiveListener(lis net.Listener) (net.Listener, error) {
	return d.s.gw.NewDataListener(dataProtocol, lis, d.s.controlSessionFor), nil
}

// controlSessionFor finds the control session a data connection from
// remote belongs to.
func (s *Server) controlSessionFor(remote net.Addr) *gateway.Session {
	ip := addrIP(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *gateway.Session
	for _, c := range s.clients {
		// The session's address, not c.cc.RemoteAddr(): ftpserverlib
		// replaces the client's conn on AUTH TLS in that client's
		// goroutine, so reading it from here is a data race.
		if addrIP(c.sess.Remote) != ip {
			continue
		}
		if best == nil || c.cc.GetLastDataChannel() == ftpserver.DataChannelPassive && c.sess.Info().Transfers > 0 {
			best = c.sess
		}
	}
	return best
}

func addrIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// recovered turns a panic in a callback ftpserverlib runs into an error,
// logging the stack: a bug in one session must not take the server down.
func recovered(c *client, op string, err *error) {
	if r := recover(); r != nil {
		c.sess.Logger().Error("panic in FTP handler", "op", op, "panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error during %s", op)
	}
}
