package backend

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// This file holds an open file's write path: the coalescer, which merges
// small writes into large messages, and the window, which bounds the
// messages awaiting the agent's acknowledgement.

const (
	// chunk is the size of the data of one write message once coalesced
	// and of one read-ahead block: just under 1 MiB, so that a whole
	// message (data plus a few bytes of framing) fits grpc-go's pooled
	// 1 MiB buffers on both ends instead of a fresh, zeroed allocation.
	chunk = 1<<20 - 64
	// maxExtents and maxBuffered bound the writes held back per file.
	maxExtents  = 16
	maxBuffered = 8 << 20
	// writeWindow is how many write messages may await their
	// acknowledgement.
	writeWindow = 16
)

// bufferPool holds chunk-capacity write buffers, reused from one coalesced
// message to the next.
type bufferPool struct{ p sync.Pool }

// get is an empty buffer of capacity chunk.
func (bp *bufferPool) get() []byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, chunk)
}

// put returns a buffer from get to the pool; others are left to the
// garbage collector.
func (bp *bufferPool) put(b []byte) {
	if cap(b) == chunk {
		b = b[:0]
		bp.p.Put(&b)
	}
}

// extent is a run of written bytes not yet sent.
type extent struct {
	off  int64
	data []byte
}

// coalescer holds writes back and sends them as messages of up to chunk
// bytes through emit, in an order that keeps their effect: bytes written
// later at an offset win over bytes written earlier there, whatever the
// messages. Sequential writes of any size become chunk-sized messages;
// writes that arrive out of order (SFTP clients pipeline) are joined when
// they meet. It is not safe for concurrent use: the file's mu guards it.
type coalescer struct {
	pool *bufferPool
	// emit sends one message. data is only valid during the call,
	// unless lend is set and emit returns lent: the buffer is then
	// emit's, which returns it to the pool once the agent has replied
	// (send lends an extent's whole buffer when it is one message).
	emit func(off int64, data []byte, lend bool) (lent bool, err error)

	extents  []*extent
	buffered int
	extCap   int // capacity of the next new extent: grows with the writes, up to chunk
}

// add holds p (written at off) back for coalescing and sends what is
// ready. An extent that continues another is filled up to exactly chunk
// bytes, sent, and the rest of p starts the next one, so sequential writes
// of any size become chunk-sized messages without reallocating.
func (c *coalescer) add(p []byte, off int64) error {
	end := off + int64(len(p))
	// cur is an extent this write continues. Every extent is looked at:
	// one the write overlaps may come after it in the list.
	var cur *extent
	overlaps := false
	for _, e := range c.extents {
		eEnd := e.off + int64(len(e.data))
		if cur == nil && eEnd == off && len(e.data) < chunk {
			cur = e
		} else if off < eEnd && e.off < end {
			overlaps = true
		}
	}
	if overlaps {
		// Overwrites bytes not yet sent: keep the order by sending
		// everything held back first.
		if err := c.flush(); err != nil {
			return err
		}
		cur = nil
	}
	for len(p) > 0 {
		if cur == nil {
			cur = &extent{off: off, data: c.newBuffer(len(p))}
			c.extents = append(c.extents, cur)
		}
		n := min(len(p), chunk-len(cur.data))
		cur.data = append(c.grow(cur.data, n), p[:n]...)
		c.buffered += n
		p, off = p[n:], off+int64(n)
		if len(cur.data) == chunk {
			if err := c.send(cur); err != nil {
				return err
			}
			cur = nil
		}
	}
	if cur != nil {
		// Join the extent that starts where this one now ends (writes
		// that arrived out of order); send splits it.
		for i, e := range c.extents {
			if e != cur && e.off == end {
				cur.data = append(cur.data, e.data...)
				c.extents = append(c.extents[:i], c.extents[i+1:]...)
				c.pool.put(e.data)
				break
			}
		}
		if len(cur.data) >= chunk {
			if err := c.send(cur); err != nil {
				return err
			}
		}
	}
	for len(c.extents) > maxExtents || c.buffered > maxBuffered {
		if err := c.send(c.extents[0]); err != nil {
			return err
		}
	}
	return nil
}

// sendOwned sends buf (from the pool, written at off) at once, after the
// writes held back, and returns it to the pool: ReadFrom's path, where the
// data was read straight into a message buffer.
func (c *coalescer) sendOwned(buf []byte, off int64) error {
	if err := c.flush(); err != nil {
		c.pool.put(buf)
		return err
	}
	e := &extent{off: off, data: buf}
	c.extents = append(c.extents, e)
	c.buffered += len(buf)
	return c.send(e)
}

// holdOwned holds buf (from the pool, written at off) back as an extent of
// its own, after sending the writes held back before it: the last part
// ReadFrom read, which the close may carry (takeOnly).
func (c *coalescer) holdOwned(buf []byte, off int64) error {
	if err := c.flush(); err != nil {
		c.pool.put(buf)
		return err
	}
	c.extents = append(c.extents, &extent{off: off, data: buf})
	c.buffered += len(buf)
	return nil
}

// newBuffer is an empty buffer for an extent whose first write has n
// bytes: small at first (a small file costs about its size), a pooled
// chunk once the file's writes have filled one.
func (c *coalescer) newBuffer(n int) []byte {
	if c.extCap >= chunk || n >= chunk {
		return c.pool.get()
	}
	return make([]byte, 0, max(n, c.extCap))
}

// grow makes room for n more bytes in b, doubling its capacity up to
// chunk, where it takes a pooled buffer.
func (c *coalescer) grow(b []byte, n int) []byte {
	if len(b)+n <= cap(b) {
		return b
	}
	capacity := max(len(b)+n, min(2*cap(b), chunk))
	c.extCap = max(c.extCap, min(capacity, chunk))
	var nb []byte
	if capacity == chunk {
		nb = c.pool.get()[:len(b)]
	} else {
		nb = make([]byte, len(b), capacity)
	}
	copy(nb, b)
	c.pool.put(b)
	return nb
}

// send sends e in messages of at most chunk bytes and forgets it. An
// extent of one message lends its buffer to emit, which keeps it or not;
// otherwise, and when emit did not keep it, the buffer goes back to the
// pool (emit has copied the data into the message by the time it returns).
func (c *coalescer) send(e *extent) error {
	for i, x := range c.extents {
		if x == e {
			c.extents = append(c.extents[:i], c.extents[i+1:]...)
			break
		}
	}
	c.buffered -= len(e.data)
	if len(e.data) <= chunk {
		lent, err := c.emit(e.off, e.data, true)
		if !lent {
			c.pool.put(e.data)
		}
		return err
	}
	defer c.pool.put(e.data)
	for data, off := e.data, e.off; len(data) > 0; {
		n := min(len(data), chunk)
		if _, err := c.emit(off, data[:n], false); err != nil {
			return err
		}
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// takeOnly takes the held-back writes when they are one extent of at most
// chunk bytes (a small upload's data, or a large one's last part): the
// caller sends them itself (a close that carries its file's last write)
// and returns data to the pool once sent. ok is false, and nothing is
// taken, otherwise.
func (c *coalescer) takeOnly() (off int64, data []byte, ok bool) {
	if len(c.extents) != 1 || len(c.extents[0].data) > chunk {
		return 0, nil, false
	}
	e := c.extents[0]
	c.extents, c.buffered = c.extents[:0], 0
	return e.off, e.data, true
}

// flush sends every held-back write.
func (c *coalescer) flush() error {
	for len(c.extents) > 0 {
		if err := c.send(c.extents[0]); err != nil {
			return err
		}
	}
	return nil
}

// drop forgets the held-back writes (an aborted transfer).
func (c *coalescer) drop() {
	for _, e := range c.extents {
		c.pool.put(e.data)
	}
	c.extents, c.buffered = nil, 0
}

// window bounds the write messages awaiting acknowledgement and keeps the
// first failure among them. Its methods are safe for concurrent use; the
// acknowledgement callbacks call release and fail.
type window struct {
	slots chan struct{} // one token per unacknowledged write

	// drainMu lets one drain at a time collect the tokens: two at once
	// (an SFTP Flush beside a Reopen) would split them, and neither
	// could finish.
	drainMu sync.Mutex

	mu  sync.Mutex
	err error
}

func newWindow() *window { return &window{slots: make(chan struct{}, writeWindow)} }

// acquire takes a slot for one more write, waiting at most timeout; it
// fails with broken's result when the stream ends first (broken is closed).
func (w *window) acquire(timeout time.Duration, broken <-chan struct{}) error {
	select {
	case w.slots <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case w.slots <- struct{}{}:
		return nil
	case <-broken:
		return errStreamEnded
	case <-timer.C:
		return fmt.Errorf("%w: writes not acknowledged within %v", context.DeadlineExceeded, timeout)
	}
}

// release frees a slot: a write was acknowledged, or failed.
func (w *window) release() { <-w.slots }

// fail records a write's failure; the first one is kept.
func (w *window) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// failed is the first write failure, or nil.
func (w *window) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// drain waits until every write sent has been acknowledged, at most
// timeout (after any drain before it), and returns the first failure.
func (w *window) drain(timeout time.Duration, broken <-chan struct{}) error {
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	taken := 0
	defer func() {
		for ; taken > 0; taken-- {
			<-w.slots
		}
	}()
	for ; taken < writeWindow; taken++ {
		select {
		case w.slots <- struct{}{}:
		case <-broken:
			if err := w.failed(); err != nil {
				return err
			}
			return errStreamEnded
		case <-timer.C:
			return fmt.Errorf("%w: writes not acknowledged within %v", context.DeadlineExceeded, timeout)
		}
	}
	return w.failed()
}
