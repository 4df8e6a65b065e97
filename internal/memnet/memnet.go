// Package memnet is an in-memory TCP network for tests that run under
// testing/synctest: a goroutine blocked on a real socket is not durably
// blocked, so a synctest bubble's fake clock never moves while one waits
// on the network. memnet's connections block on sync.Cond and channels
// made in the bubble, which are durable, and their deadlines are timers on
// the bubble's clock.
//
// Unlike net.Pipe, writes never wait for the reader (each direction is an
// unbounded buffer), so protocols in which both sides write first (an SSH
// version line, an FTP greeting) work. Addresses are *net.TCPAddr, so code
// that reads the client's IP from RemoteAddr works unchanged. Cut pulls
// the cable: a peer that vanished without a FIN.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Listener is an in-memory listener. The zero value is not usable; use
// Listen.
type Listener struct {
	addr  *net.TCPAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	// mu guards next.
	mu   sync.Mutex
	next int // the next client port
}

// Listen returns a listener whose address is addr ("127.0.0.1:2121").
func Listen(addr string) *Listener {
	return &Listener{addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
		conns: make(chan net.Conn), done: make(chan struct{}), next: 40000}
}

// Accept waits for the next connection Dial makes.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close stops accepting; connections already made stay open.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Dial connects to l from 127.0.0.1. See DialFrom.
func (l *Listener) Dial(ctx context.Context) (*Conn, error) {
	return l.DialFrom(ctx, netip.MustParseAddr("127.0.0.1"))
}

// DialFrom connects to l from ip (a new port each time) and returns the
// client's end once Accept has taken the server's end, or an error when
// ctx ends or l is closed first.
func (l *Listener) DialFrom(ctx context.Context, ip netip.Addr) (*Conn, error) {
	l.mu.Lock()
	port := l.next
	l.next++
	l.mu.Unlock()
	client, server := Pipe(net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), l.addr)
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, fmt.Errorf("memnet: dial %s: %w", l.addr, net.ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("memnet: dial %s: %w", l.addr, ctx.Err())
	}
}

// Pipe returns the two ends of a connection between the addresses client
// and server.
func Pipe(client, server net.Addr) (*Conn, *Conn) {
	link := &link{}
	link.cond.L = &link.mu
	c := &Conn{link: link, local: client, remote: server}
	s := &Conn{link: link, local: server, remote: client}
	c.peer, s.peer = s, c
	return c, s
}

// link is what the two ends of a connection share.
type link struct {
	// mu guards the state of both ends; cond is signalled on every change.
	mu   sync.Mutex
	cond sync.Cond
	cut  bool // the cable is pulled
}

// Conn is one end of an in-memory connection. It is safe for concurrent
// use, as a net.Conn is.
type Conn struct {
	link          *link
	peer          *Conn
	local, remote net.Addr

	// Guarded by link.mu.
	buf                         []byte // received, not yet read
	closed                      bool   // this end was closed
	eof                         bool   // the peer closed: no more data will come
	readDeadline, writeDeadline deadline
}

// deadline is one direction's deadline and its timer.
type deadline struct {
	t     time.Time
	timer *time.Timer
}

// set arms d for t, waking the waiters of l when it passes.
func (d *deadline) set(t time.Time, l *link) {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.t = t
	if !t.IsZero() {
		if wait := time.Until(t); wait > 0 {
			d.timer = time.AfterFunc(wait, func() {
				l.mu.Lock()
				l.cond.Broadcast()
				l.mu.Unlock()
			})
		}
	}
}

func (d *deadline) passed() bool { return !d.t.IsZero() && !time.Now().Before(d.t) }

// Read reads what the peer wrote, waiting for it; io.EOF once the peer
// closed and everything was read.
func (c *Conn) Read(p []byte) (int, error) {
	l := c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, c.opError("read", net.ErrClosed)
		case len(c.buf) > 0 && !l.cut:
			n := copy(p, c.buf)
			c.buf = c.buf[n:]
			return n, nil
		case c.eof && !l.cut:
			return 0, io.EOF
		case c.readDeadline.passed():
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		l.cond.Wait()
	}
}

// Write hands p to the peer; it never waits for the peer to read. After
// Cut it succeeds and the bytes are lost, as on a pulled cable.
func (c *Conn) Write(p []byte) (int, error) {
	l := c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case c.closed:
		return 0, c.opError("write", net.ErrClosed)
	case c.writeDeadline.passed():
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	case l.cut:
		return len(p), nil
	case c.peer.closed:
		return 0, c.opError("write", errors.New("connection reset by peer"))
	}
	c.peer.buf = append(c.peer.buf, p...)
	l.cond.Broadcast()
	return len(p), nil
}

// Close closes this end; the peer reads io.EOF after what was written.
func (c *Conn) Close() error {
	l := c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return c.opError("close", net.ErrClosed)
	}
	c.closed, c.peer.eof = true, true
	c.readDeadline.set(time.Time{}, l)
	c.writeDeadline.set(time.Time{}, l)
	l.cond.Broadcast()
	return nil
}

// Cut pulls the cable between the two ends: from now on what either
// writes is lost, and neither reads anything more, not even the other's
// close, until its own deadline passes or it is closed.
func (c *Conn) Cut() {
	l := c.link
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	l.cond.Broadcast()
}

func (c *Conn) LocalAddr() net.Addr  { return c.local }
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) SetDeadline(t time.Time) error      { return c.setDeadline(t, true, true) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.setDeadline(t, true, false) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

// setDeadline sets the read and/or write deadline and wakes the waiters,
// which look at it again.
func (c *Conn) setDeadline(t time.Time, read, write bool) error {
	c.link.mu.Lock()
	defer c.link.mu.Unlock()
	if read {
		c.readDeadline.set(t, c.link)
	}
	if write {
		c.writeDeadline.set(t, c.link)
	}
	c.link.cond.Broadcast()
	return nil
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}
