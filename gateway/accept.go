package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// ErrServerClosed is why a connection that arrives while the gateway
// drains (Shutdown) is refused: Protocol.Refuse tells the client its text.
// The accept layer's listeners themselves, once closed or drained, return
// an error wrapping net.ErrClosed, and a frontend's Serve then returns nil.
var ErrServerClosed = errors.New("gateway: server closed")

// Protocol describes a frontend to the accept layer. Adding a protocol
// means writing a frontend that fills this in; the accept layer does not
// change.
type Protocol struct {
	// Name labels the protocol's sessions, logs and metrics ("ftp",
	// "sftp").
	Name string
	// ReadIsActivity makes every byte the client sends count as activity
	// for the idle timeout: right for FTP's control connection, where the
	// client speaks only to send commands (NOOP included). When false the
	// frontend calls Session.Touch itself, as SSH must: a client's replies
	// to the server's own keepalives are not activity.
	ReadIsActivity bool
	// Refuse, if non-nil, tells a client the gateway will not serve why,
	// in the protocol's words ("421 Too many connections"), before its
	// connection is closed. The connection has a write deadline; Refuse
	// must not close it.
	Refuse func(c net.Conn, reason string)
	// PostUploadOpens lets the sessions' uploads open without waiting for
	// the agent (backend.Options.PostUploadOpens): right for FTP, whose
	// STOR answers 150 before the data and the upload's failure after
	// it either way; not for SFTP, whose clients expect an OPEN's error
	// from the OPEN.
	PostUploadOpens bool
	// ReadersFollowSaves makes the sessions' handles open for reading
	// follow their own later saves of the path
	// (backend.ReadersFollowSaves): right for SFTP, whose clients (sshfs
	// programs) expect a descriptor's semantics; not for WebDAV, where a
	// GET beside a PUT of its path must stay one version.
	ReadersFollowSaves bool
}

// refuseTimeout bounds writing a refusal to a client that does not read.
const refuseTimeout = 2 * time.Second

// acceptSettings are the accept layer's knobs, from config.Connections.
type acceptSettings struct {
	keepalive       net.KeepAliveConfig
	userTimeout     time.Duration
	idleTimeout     time.Duration // 0: none
	progressTimeout time.Duration // 0: none
	trusted         []netip.Prefix
	proxyTimeout    time.Duration
}

// Listen listens on addr (TCP) and returns the listener a frontend serves.
// See NewListener.
func (g *Gateway) Listen(proto Protocol, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s on %s: %w", proto.Name, addr, err)
	}
	return g.NewListener(proto, lis), nil
}

// NewListener runs the accept layer on lis and returns the listener a
// frontend serves. Each connection it yields has passed the accept layer:
// TCP keepalive and TCP_USER_TIMEOUT are set, the PROXY header (from a
// trusted proxy) is read, the defender and the connection limits have let
// it in, and its session is registered. The connection is a *Conn; closing
// it removes the session. Closing the returned listener, or Shutdown, stops
// accepting; Accept then returns an error wrapping net.ErrClosed.
func (g *Gateway) NewListener(proto Protocol, lis net.Listener) net.Listener {
	l := &acceptListener{g: g, proto: proto, inner: lis, conns: make(chan *Conn), done: make(chan struct{})}
	g.mu.Lock()
	if g.draining {
		g.mu.Unlock()
		l.Close()
		return l
	}
	g.listeners[l] = struct{}{}
	g.mu.Unlock()
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// acceptListener delivers accepted connections to a frontend through a
// channel, after the accept layer's checks.
type acceptListener struct {
	g     *Gateway
	proto Protocol
	inner net.Listener
	conns chan *Conn
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup // the accept loop and per-connection setups
}

func (l *acceptListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.inner.Addr(), Err: net.ErrClosed}
	}
}

func (l *acceptListener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting and returns once the accept goroutines are gone.
func (l *acceptListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.g.mu.Lock()
		delete(l.g.listeners, l)
		l.g.mu.Unlock()
	})
	l.wg.Wait()
	return err
}

func (l *acceptListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.g.log.Error("accept failed", "proto", l.proto.Name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c, err := l.g.admit(l.proto, raw, nil, nil)
			if err != nil {
				return
			}
			select {
			case l.conns <- c:
			case <-l.done:
				_ = c.Close()
			}
		}()
	}
}

// admit runs the accept layer on one raw connection: socket options, PROXY
// header, defender, limits, registration. For a data connection, parent is
// its control session and data says which client addresses it admits; both
// are nil for control connections. On refusal the connection is closed and
// an error returned.
func (g *Gateway) admit(proto Protocol, raw net.Conn, parent *Session, data *DataOptions) (*Conn, error) {
	s := g.settings
	tcp, _ := raw.(*net.TCPConn)
	if tcp != nil {
		if err := tuneTCP(tcp, s.keepalive, s.userTimeout); err != nil {
			g.log.Warn("socket options", "proto", proto.Name, "remote", raw.RemoteAddr().String(), "err", err)
		}
	}
	conn, remote, local := raw, raw.RemoteAddr(), raw.LocalAddr()
	if len(s.trusted) > 0 {
		if g.trustedProxy(raw.RemoteAddr()) {
			// A trusted balancer sends the header before anything else.
			p := proxyproto.NewConn(raw, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(s.proxyTimeout))
			if p.ProxyHeader() == nil {
				g.log.Warn("connection refused: no valid PROXY header from trusted proxy", "proto", proto.Name, "proxy", raw.RemoteAddr().String())
				g.count(proto, ReasonProxy)
				raw.Close()
				return nil, errors.New("gateway: missing PROXY header")
			}
			conn, remote, local = p, p.RemoteAddr(), p.LocalAddr()
		} else {
			// Anyone else's PROXY header is refused at the first read.
			conn = &rejectProxy{Conn: raw, g: g, proto: proto.Name}
		}
	}
	if parent != nil {
		if err := parent.admitsData(remote, data.AnyAddress); err != nil {
			parent.log.Warn("data connection refused", "proto", proto.Name, "data_remote", remote.String(), "err", err)
			g.count(proto, ReasonDataRefused)
			conn.Close()
			return nil, err
		}
	}
	sess := &Session{
		Protocol: proto.Name, Remote: remote, Local: local, Start: g.now(), Parent: parent,
		r: g.registry, tcp: tcp, postOpens: proto.PostUploadOpens, readersFollow: proto.ReadersFollowSaves,
	}
	sess.lastActivity.Store(sess.Start.UnixNano())
	sess.lastIO.Store(sess.Start.UnixNano())
	refuse := func(reason string, err error) (*Conn, error) {
		g.log.Warn("connection refused", "proto", proto.Name, "remote", remote.String(), "reason", reason, "err", err)
		g.count(proto, reason)
		if proto.Refuse != nil {
			_ = conn.SetDeadline(time.Now().Add(refuseTimeout))
			proto.Refuse(conn, err.Error())
			lingerClose(tcp)
		}
		conn.Close()
		return nil, err
	}
	if parent == nil && g.defender != nil && g.defender.Banned(addrIP(remote)) {
		return refuse(ReasonBanned, fmt.Errorf("address %s is banned after failed logins", addrIP(remote)))
	}
	// Everything closing a session touches is set before the registry
	// publishes it, since from then on a Kick, a drain or the close of its
	// control session may close it. The timers are stored unarmed and
	// armed once it is registered: their callbacks read them (Close stops
	// them) and must not close a session not yet registered.
	c := &Conn{Conn: conn, sess: sess, readIsActivity: proto.ReadIsActivity, remote: remote, local: local,
		bytesIn:  g.metrics.Bytes.WithLabelValues(proto.Name, "in"),
		bytesOut: g.metrics.Bytes.WithLabelValues(proto.Name, "out")}
	sess.closer = c.Close
	sess.log = g.log.With("proto", proto.Name, "remote", remote.String())
	if parent == nil && s.idleTimeout > 0 {
		sess.idle = s.idleTimeout
		sess.timer = time.AfterFunc(math.MaxInt64, sess.checkIdle)
	}
	if parent != nil && s.progressTimeout > 0 {
		c.progressTimeout = s.progressTimeout
		c.progress = time.AfterFunc(math.MaxInt64, func() {
			sess.log.Warn("data transfer stalled: closing", "timeout", s.progressTimeout)
			_ = sess.Close(ReasonProgress)
		})
	}
	if reason, err := g.registry.add(sess); err != nil { // add puts the session ID in sess.log
		if sess.timer != nil {
			sess.timer.Stop()
		}
		if c.progress != nil {
			c.progress.Stop()
		}
		return refuse(reason, err)
	}
	if sess.timer != nil {
		sess.timer.Reset(s.idleTimeout)
	}
	if c.progress != nil {
		c.progress.Reset(s.progressTimeout)
	}
	g.metrics.ConnectionsTotal.WithLabelValues(proto.Name).Inc()
	g.metrics.ConnectionsActive.WithLabelValues(proto.Name).Inc()
	sess.log.Debug("connection accepted", "local", local.String())
	return c, nil
}

// lingerClose ends a refused connection gently: FIN, then discard what the
// client still sends until it closes or the deadline passes. Closing with
// unread data would send a RST, and the client could lose the refusal
// (an SSH client has sent its version and KEXINIT by then).
func lingerClose(tcp *net.TCPConn) {
	if tcp == nil {
		return
	}
	_ = tcp.CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(tcp, 1<<16))
}

func (g *Gateway) trustedProxy(a net.Addr) bool {
	ip := addrIP(a)
	for _, p := range g.settings.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// count records a refused connection.
func (g *Gateway) count(proto Protocol, reason string) {
	g.metrics.ConnectionsClosed.WithLabelValues(proto.Name, reason).Inc()
}

// rejectProxy refuses a PROXY header from an untrusted address: the first
// read fails and the connection is logged and closed. It looks only at the
// bytes the client's first read returns and never waits for more (a PROXY
// header is sent at once): proxyproto.Conn would block until 12 bytes
// arrive whenever the first starts like a signature ('P' or CR), hanging a
// client whose first command is short, such as "PWD\r\n". Reads must not be
// concurrent, as with any net.Conn a frontend reads from.
type rejectProxy struct {
	net.Conn
	g       *Gateway
	proto   string
	checked bool   // the first bytes were checked
	first   []byte // the first read's bytes not yet returned
	err     error  // set once a header was refused
}

func (r *rejectProxy) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.checked {
		buf := make([]byte, 256)
		n, err := r.Conn.Read(buf)
		if n == 0 {
			return 0, err
		}
		r.checked, r.first = true, buf[:n]
		if bytes.HasPrefix(r.first, proxyproto.SIGV1) || bytes.HasPrefix(r.first, proxyproto.SIGV2) {
			r.g.log.Warn("connection refused: PROXY header from an untrusted address", "proto", r.proto, "remote", r.Conn.RemoteAddr().String())
			r.Conn.Close()
			r.first, r.err = nil, proxyproto.ErrSuperfluousProxyHeader
			return 0, r.err
		}
	}
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// DataOptions configure a data listener (NewDataListener). The zero value
// is the strict default.
type DataOptions struct {
	// AnyAddress admits data connections from any client address. False
	// refuses one from another IP than its control connection's, as
	// vsftpd's pasv_promiscuous=NO does: a stranger who guesses the port
	// gets nothing.
	AnyAddress bool
	// UnusedTimeout closes the listener, freeing its port, when nothing
	// asked it for a connection (Accept) within this long of its creation:
	// a client that sends PASV and no transfer command does not hold a
	// port. Zero means no bound.
	UnusedTimeout time.Duration
}

// ErrDataListenerUnused is returned (wrapped) by Accept on a data listener
// that UnusedTimeout closed.
var ErrDataListenerUnused = errors.New("gateway: passive data port released: no transfer command in time")

// NewDataListener wraps lis, the listener for the data connections of the
// control session parent (an FTP passive port). Each accepted connection
// gets the socket options and PROXY handling of control connections and the
// progress timeout, and becomes a child session of parent, closed with it.
// A connection is refused (closed, and Accept goes on waiting) while parent
// has no logged-in user or has ended, and when it comes from another IP than
// parent's unless opts.AnyAddress. Closing the returned listener closes lis.
func (g *Gateway) NewDataListener(proto Protocol, lis net.Listener, parent *Session, opts DataOptions) net.Listener {
	d := &dataListener{Listener: lis, g: g, proto: proto, parent: parent, opts: opts}
	if opts.UnusedTimeout > 0 {
		d.unused = time.AfterFunc(opts.UnusedTimeout, d.expire)
	}
	return d
}

type dataListener struct {
	net.Listener
	g      *Gateway
	proto  Protocol
	parent *Session
	opts   DataOptions
	unused *time.Timer // nil without UnusedTimeout

	// mu guards used and expired.
	mu      sync.Mutex
	used    bool // Accept was called: the timer no longer applies
	expired bool // the timer closed the listener
}

// expire closes a listener nobody asked for a connection in time.
func (d *dataListener) expire() {
	d.mu.Lock()
	if d.used {
		d.mu.Unlock()
		return
	}
	d.expired = true
	d.mu.Unlock()
	d.parent.log.Info("passive data port released: no transfer command", "port", d.Addr().String(), "timeout", d.opts.UnusedTimeout)
	_ = d.Listener.Close()
}

// Accept returns the next data connection that passes the accept layer;
// refused ones are closed and skipped. The inner listener's deadline (set
// by the frontend) bounds the wait. Once the inner listener fails (its
// deadline, a close), it is closed for good and its port freed.
func (d *dataListener) Accept() (net.Conn, error) {
	d.mu.Lock()
	d.used = true
	expired := d.expired
	d.mu.Unlock()
	if d.unused != nil {
		d.unused.Stop()
	}
	if expired {
		return nil, fmt.Errorf("%w (%v after PASV); send PASV again", ErrDataListenerUnused, d.opts.UnusedTimeout)
	}
	for {
		raw, err := d.Listener.Accept()
		if err != nil {
			_ = d.Listener.Close()
			return nil, err
		}
		if c, err := d.g.admit(d.proto, raw, d.parent, &d.opts); err == nil {
			return c, nil
		}
	}
}

// SetDeadline sets the inner listener's accept deadline. Setting one
// means a transfer will ask for its connection: the unused timer stops. On
// a listener the timer closed it does nothing, so that Accept says why.
func (d *dataListener) SetDeadline(t time.Time) error {
	d.mu.Lock()
	d.used = true
	expired := d.expired
	d.mu.Unlock()
	if d.unused != nil {
		d.unused.Stop()
	}
	ds, ok := d.Listener.(interface{ SetDeadline(time.Time) error })
	if expired || !ok {
		return nil
	}
	return ds.SetDeadline(t)
}

// Close closes the inner listener and stops the unused timer.
func (d *dataListener) Close() error {
	if d.unused != nil {
		d.unused.Stop()
	}
	return d.Listener.Close()
}

// Shutdown drains the gateway: it stops accepting, closes sessions with no
// transfer in progress, waits for the others to finish their transfers
// until ctx ends, then closes whatever is left. It returns once every
// session is gone (or, if a frontend never closes a connection, when ctx
// ends and ten more seconds have passed). Shutdown's error is ctx's if
// transfers had to be cut.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.draining = true
	ls := make([]*acceptListener, 0, len(g.listeners))
	for l := range g.listeners {
		ls = append(ls, l)
	}
	g.mu.Unlock()
	g.registry.mu.Lock()
	g.registry.draining = true
	g.registry.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	g.log.Info("draining", "sessions", g.registry.Len())
	// quiet is how long a session must have moved no byte after its last
	// transfer before it is closed, so the transfer's final reply (FTP's
	// 226) reaches the client.
	const quiet = 300 * time.Millisecond
	tick := 10 * time.Millisecond
	var cut error
	for {
		live := g.registry.Sessions()
		if len(live) == 0 {
			return cut
		}
		for _, s := range live {
			if s.Parent != nil {
				continue // closed with its control session
			}
			if cut != nil || (s.transfers.Load() == 0 && g.now().Sub(time.Unix(0, s.lastIO.Load())) >= quiet) {
				_ = s.Close(ReasonDrain)
			}
		}
		select {
		case <-ctx.Done():
			if cut == nil {
				cut = ctx.Err()
				g.log.Warn("drain timeout: closing sessions with transfers in progress", "sessions", len(live))
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				continue
			}
			return errors.Join(cut, fmt.Errorf("gateway: %d sessions still open after drain", len(live)))
		case <-time.After(tick):
		}
		tick = min(2*tick, 250*time.Millisecond)
	}
}

// Registry returns the live sessions.
func (g *Gateway) Registry() *Registry { return g.registry }
