package sftp

import (
	"context"
	"errors"
	"fmt"
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

	// mu guards login and preauth, set by the auth callbacks.
	mu      sync.Mutex
	login   *gateway.Login
	preauth ssh.ServerPreAuthConn
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
// connection is closed and its session gone.
func (s *Server) serveConn(gc *gateway.Conn) {
	defer gc.Close()
	sess := gc.Session()
	log := sess.Logger()
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
	defer sconn.Close()
	sess.SetCloser(sconn.Close)
	c.mu.Lock()
	login := c.login
	c.mu.Unlock()
	if login == nil {
		log.Error("ssh: authenticated without a login")
		return
	}
	sess.Touch()
	log.Info("ssh session", "client", string(sconn.ClientVersion()), "method", login.Method)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.globalRequests(reqs)
	}()
	go func() {
		defer wg.Done()
		c.keepalive(sconn)
	}()
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			c.session(ch, creqs, login)
		}()
	}
	cancel()
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

// keepalive sends keepalive@openssh.com every interval and closes the
// connection when maxMissed requests in a row went unanswered. Any reply,
// a refusal included, proves the client alive. It returns when the
// connection ends.
func (c *conn) keepalive(sconn *ssh.ServerConn) {
	interval, maxMissed := c.s.cfg.KeepaliveInterval, c.s.cfg.KeepaliveMaxMissed
	if interval < 0 {
		<-c.ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending chan error // the reply to the last request sent
	missed := 0
	for {
		select {
		case <-c.ctx.Done():
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
					c.sess.Logger().Warn("closing connection: SSH keepalive unanswered", "missed", missed, "interval", interval)
					_ = c.sess.Close(gateway.ReasonSSHKeepalive)
					return
				}
				continue // the request is still out; do not pile up more
			}
		}
		pending = make(chan error, 1)
		go func(ch chan error) {
			_, _, err := sconn.SendRequest("keepalive@openssh.com", true, nil)
			ch <- err
		}(pending)
	}
}
