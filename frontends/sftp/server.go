package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// conn is one SSH connection's state between the handshake callbacks and
// the channels.
type conn struct {
	s    *Server
	gc   *gateway.Conn
	sess *gateway.Session
	ctx  context.Context
	// wg counts the connection's goroutines: its channels, their request
	// discarders, global requests, keepalive. serveConn waits for it once
	// the connection is closed, which ends them all.
	wg sync.WaitGroup
	// receiving counts the scp files whose data is arriving or committing
	// (scpSession.receive): when the connection ends, serveConn lets them
	// finish, for at most receiveGrace, before the login's filesystem ends.
	receiving pending

	// mu guards login and preauth, set by the auth callbacks, and
	// channels and ending.
	mu       sync.Mutex
	login    *gateway.Login
	preauth  ssh.ServerPreAuthConn
	channels map[ssh.Channel]struct{} // the session channels being served
	ending   bool                     // serveConn waits for wg: no more goroutines
}

// serverConfig builds the ssh.ServerConfig for one connection: logins go
// through the gateway and are bound to this connection's lifetime.
func (c *conn) serverConfig() *ssh.ServerConfig {
	conf := &ssh.ServerConfig{
		MaxAuthTries:  c.s.cfg.MaxAuthTries,
		ServerVersion: serverVersion,
		PasswordCallback: func(md ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			l, err := c.s.gw.LoginPassword(c.ctx, c.sess, md.User(), string(password))
			if err != nil {
				return nil, c.explain(err)
			}
			c.setLogin(l)
			return &ssh.Permissions{}, nil
		},
		// Called for keys the client only offers, too: no login here.
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !c.s.gw.HasKey(md.User(), key) {
				return nil, errors.New("key not authorized")
			}
			return &ssh.Permissions{}, nil
		},
		// Called once the client proved it holds the key.
		VerifiedPublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			l, err := c.s.gw.LoginKey(c.ctx, c.sess, md.User(), key)
			if err != nil {
				return nil, c.explain(err)
			}
			c.setLogin(l)
			return perms, nil
		},
		PreAuthConnCallback: func(pc ssh.ServerPreAuthConn) {
			c.mu.Lock()
			c.preauth = pc
			c.mu.Unlock()
		},
	}
	// x/crypto's defaults plus diffie-hellman-group-exchange-sha256, which
	// the VS Code SFTP extension lists among its default key exchanges
	// (with no curve25519) and older clients rely on.
	conf.SetDefaults()
	conf.KeyExchanges = append(conf.KeyExchanges, ssh.KeyExchangeDHGEXSHA256)
	for _, k := range c.s.cfg.HostKeys {
		conf.AddHostKey(k)
	}
	return conf
}

func (c *conn) setLogin(l *gateway.Login) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.login = l
}

// explain shows the client why a login failed when it is not a wrong
// password (an unreachable agent, a connection limit): SSH has no field
// for that but the authentication banner, which clients print.
func (c *conn) explain(err error) error {
	if errors.Is(err, gateway.ErrAuthFailed) {
		return err
	}
	c.mu.Lock()
	pc := c.preauth
	c.mu.Unlock()
	if pc != nil {
		msg := err.Error()
		if errors.Is(err, backend.ErrUnavailable) || errors.Is(err, gateway.ErrTooManyConnections) || errors.Is(err, gateway.ErrBanned) {
			msg = "upgate: " + msg
		}
		_ = pc.SendAuthBanner(msg + "\n")
	}
	return err
}

// serveConn runs one SSH connection to its end. When it returns, the
// connection is closed, its session gone and every goroutine it started
// ended. A panic on its way (in an authentication callback, say) is
// logged with its stack and ends this connection only.
func (s *Server) serveConn(gc *gateway.Conn) {
	defer gc.Close()
	sess := gc.Session()
	log := sess.Logger()
	defer recovered(log, "connection")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the login's filesystem: open uploads abort
	c := &conn{s: s, gc: gc, sess: sess, ctx: ctx}

	// x/crypto/ssh has no handshake timeout of its own.
	_ = gc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(gc, c.serverConfig())
	if err != nil {
		log.Info("ssh handshake failed", "err", err)
		return
	}
	_ = gc.SetDeadline(time.Time{})
	// Closing the connection ends its channels and requests, and so the
	// goroutines serving them; ctx's end stops the keepalive.
	defer func() {
		_ = sconn.Close()
		cancel()
		c.mu.Lock()
		c.ending = true
		c.mu.Unlock()
		c.wg.Wait()
	}()
	sess.SetCloser(sconn.Close)
	sess.SetGoodbye(c.goodbye)
	c.mu.Lock()
	login := c.login
	c.mu.Unlock()
	if login == nil {
		log.Error("ssh: authenticated without a login")
		return
	}
	sess.Touch()
	log.Info("ssh session", "client", string(sconn.ClientVersion()), "method", login.Method)

	c.wg.Go(func() { c.globalRequests(reqs) })
	c.wg.Go(func() { c.keepalive(sconn) })
	// open counts the channels being served; only this loop adds to it,
	// so checking it here bounds them at MaxChannels.
	var open atomic.Int32
	refused := 0
	defer func() {
		if refused > 1 {
			log.Warn("channels refused: too many open", "refused", refused, "max", s.cfg.MaxChannels)
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			log.Info("channel refused", "type", nc.ChannelType())
			_ = nc.Reject(ssh.Prohibited, fmt.Sprintf("upgate serves SFTP only; %s channels are not allowed", nc.ChannelType()))
			continue
		}
		if n := int(open.Load()); n >= s.cfg.MaxChannels {
			// The first refusal is logged; the rest are counted and
			// summed up when the connection ends, so that a client
			// opening channels in a loop cannot flood the log.
			if refused++; refused == 1 {
				log.Warn("channel refused: too many open", "open", n, "max", s.cfg.MaxChannels)
			}
			_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("upgate: at most %d channels may be open at once on one connection (sftp.max_channels)", s.cfg.MaxChannels))
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Info("accept channel", "err", err)
			continue
		}
		log.Debug("channel opened", "open", open.Add(1))
		c.wg.Go(func() {
			defer open.Add(-1)
			c.session(ch, creqs, login)
		})
	}
	// The connection is gone. An scp file whose data all arrived (a
	// libssh2 client closes right after it, without scp's closing 0 byte)
	// is committed before the filesystem ends; one cut short is aborted
	// as its reader meets the end. An SFTP upload left open is not
	// waited for: pkg/sftp aborts it (openFile.TransferError).
	c.waitReceiving(receiveGrace)
	cancel()
}

// receiveGrace bounds how long a connection's end waits for its scp
// files to commit or abort.
const receiveGrace = 30 * time.Second

// waitReceiving waits for c.receiving, at most d.
func (c *conn) waitReceiving(d time.Duration) {
	if !c.receiving.wait(d) {
		c.sess.Logger().Warn("scp uploads still running when the connection ended: aborted", "waited", d)
	}
}

// pending counts work in progress that something may wait for, bounded.
// Unlike a sync.WaitGroup, work may start while a wait is under way (an
// scp record read from the buffer after the connection ended).
type pending struct {
	mu    sync.Mutex
	n     int
	empty chan struct{} // made by a wait while n > 0, closed when n drops to 0
}

// add counts one piece of work; done ends it.
func (p *pending) add() (done func()) {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.n--; p.n == 0 && p.empty != nil {
			close(p.empty)
			p.empty = nil
		}
	}
}

// wait waits until no work is counted, at most d: false if some still is.
func (p *pending) wait(d time.Duration) bool {
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return true
	}
	if p.empty == nil {
		p.empty = make(chan struct{})
	}
	empty := p.empty
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-empty:
		return true
	case <-t.C:
		return false
	}
}

// goodbyeTimeout bounds the goodbye to a client that reads nothing.
const goodbyeTimeout = 2 * time.Second

// goodbye tells the client why the gateway ends its session, before the
// session's closer closes the connection: a line "upgate: <message>" on
// the stderr of every session channel, which OpenSSH's sftp and ssh print
// (x/crypto/ssh cannot send SSH_MSG_DISCONNECT with a reason once the
// connection is up: its Close only closes the socket). It waits at most
// goodbyeTimeout for the lines to go out; a write still blocked then (a
// full window) ends when the connection closes.
func (c *conn) goodbye(message string) {
	line := "upgate: " + message + "\n"
	c.mu.Lock()
	if c.ending {
		c.mu.Unlock()
		return
	}
	sent := make(chan struct{}, len(c.channels))
	for ch := range c.channels {
		c.wg.Go(func() {
			_, _ = io.WriteString(ch.Stderr(), line)
			sent <- struct{}{}
		})
	}
	n := len(c.channels)
	c.mu.Unlock()
	t := time.NewTimer(goodbyeTimeout)
	defer t.Stop()
	for range n {
		select {
		case <-sent:
		case <-t.C:
			c.sess.Logger().Info("goodbye not sent to every channel", "timeout", goodbyeTimeout)
			return
		}
	}
}

// globalRequests answers the client's global requests. A client's
// keepalive@openssh.com is activity; every want-reply gets a refusal, as
// OpenSSH answers requests it does not know.
func (c *conn) globalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		c.sess.Touch()
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

// keepalive runs the connection's SSH keepalive until the connection
// ends, and closes its session when the client stops answering.
func (c *conn) keepalive(sconn *ssh.ServerConn) {
	interval := c.s.cfg.KeepaliveInterval
	keepalive(c.ctx, sconn, interval, c.s.cfg.KeepaliveMaxMissed, func(missed int) {
		c.sess.Logger().Warn("closing connection: SSH keepalive unanswered", "missed", missed, "interval", interval)
		_ = c.sess.Close(gateway.ReasonSSHKeepalive)
	})
}

// keepalive sends keepalive@openssh.com over conn every interval (none if
// interval is negative) until ctx ends or conn closes. When maxMissed
// requests in a row went unanswered it calls dead, which must close conn,
// and returns. Any reply, a refusal included, proves the peer alive; one
// request is out at a time. It returns only once its request goroutine has
// ended, so whoever ends ctx must close conn first (a request still out
// waits for a reply until then).
func keepalive(ctx context.Context, conn ssh.Conn, interval time.Duration, maxMissed int, dead func(missed int)) {
	if interval < 0 {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending chan error // the reply to the last request sent
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if pending != nil {
			select {
			case err := <-pending:
				if err != nil {
					return // connection closed
				}
				missed = 0
			default:
				missed++
				if missed >= maxMissed {
					dead(missed)
					return
				}
				continue // the request is still out; do not pile up more
			}
		}
		reply := make(chan error, 1)
		pending = reply
		wg.Go(func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		})
	}
}
