package gateway

import (
	"errors"
	"net"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"sync"
	"time"
)

// Conn is a connection that passed the accept layer, as frontends receive
// it. It counts bytes and activity into its Session, and closing it
// removes the session from the registry.
type Conn struct {
	net.Conn
	sess           *Session
	readIsActivity bool
	remote, local  net.Addr
	// bytesIn and bytesOut are the protocol's byte counters.
	bytesIn, bytesOut prometheus.Counter

	// progress, if non-nil, closes a data connection that moves no byte
	// for progressTimeout.
	progress        *time.Timer
	progressTimeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Session returns the connection's registry entry.
func (c *Conn) Session() *Session { return c.sess }

// RemoteAddr is the client's address (from the PROXY header when one was
// used).
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client dialled.
func (c *Conn) LocalAddr() net.Addr { return c.local }

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.sess.bytesIn.Add(int64(n))
		c.bytesIn.Add(float64(n))
		c.moved()
		if c.readIsActivity {
			c.sess.Touch()
		}
	}
	return n, deadPeer(err)
}

func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.sess.bytesOut.Add(int64(n))
		c.bytesOut.Add(float64(n))
		c.moved()
	}
	return n, deadPeer(err)
}

// deadPeer marks the error of a socket the kernel gave up on (keepalive
// or TCP_USER_TIMEOUT expired: ETIMEDOUT) as a net.Error that is not a
// Timeout. syscall.ETIMEDOUT reports Timeout() true, so a frontend takes
// it for a deadline of its own: ftpserverlib then "extends the idle
// deadline" of a control connection whose transfer is open and reads
// again, in a busy loop, keeping the dead session and its transfer alive
// until the transfer ends by itself.
func deadPeer(err error) error {
	if err == nil || !errors.Is(err, syscall.ETIMEDOUT) {
		return err
	}
	return &deadPeerError{err}
}

// deadPeerError is a connection's error once its peer is known dead.
// errors.Is(err, syscall.ETIMEDOUT) still holds.
type deadPeerError struct{ err error }

func (e *deadPeerError) Error() string   { return e.err.Error() }
func (e *deadPeerError) Unwrap() error   { return e.err }
func (e *deadPeerError) Timeout() bool   { return false }
func (e *deadPeerError) Temporary() bool { return false }

func (c *Conn) moved() {
	c.sess.lastIO.Store(c.sess.r.now().UnixNano())
	if c.progress != nil {
		c.progress.Reset(c.progressTimeout)
	}
}

// Close closes the connection and removes its session from the registry.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.sess.timer != nil {
			c.sess.timer.Stop()
		}
		if c.progress != nil {
			c.progress.Stop()
		}
		c.closeErr = c.Conn.Close()
		c.sess.r.remove(c.sess)
		c.sess.log.Debug("connection closed", "reason", c.sess.CloseReason(), "duration", c.sess.r.now().Sub(c.sess.Start).Round(time.Millisecond),
			"bytes_in", c.sess.bytesIn.Load(), "bytes_out", c.sess.bytesOut.Load(), "peak_open_files", c.sess.peakFiles.Load())
	})
	return c.closeErr
}
