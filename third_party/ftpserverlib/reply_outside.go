package ftpserver

// upgate fork: a reply written from outside the client's command loop,
// such as a 421 before the server closes the connection.

import (
	"errors"
	"fmt"
	"time"
)

// ClientContextReplier is implemented by the library's ClientContext
// (upgate fork). A driver type-asserts a ClientContext to it.
type ClientContextReplier interface {
	// Reply writes a reply to the client from outside its command loop:
	// RFC 959 allows a 421 as the answer to any command when the server
	// must close the control connection, which the caller does next. The
	// reply is written whole between two lines of the command loop's own
	// replies (inside a multi-line reply the client may take it for text);
	// Reply waits at most timeout for a line being written, and its own
	// write gives up after timeout too, so a client that reads nothing
	// costs timeout at most. It returns ErrReplyBusy when the wait ran
	// out.
	Reply(code int, message string, timeout time.Duration) error
}

// ErrReplyBusy is returned by Reply when another reply was still being
// written (to a client that does not read) after its timeout.
var ErrReplyBusy = errors.New("a reply is still being written to the client")

var _ ClientContextReplier = (*clientHandler)(nil)

// lockReplies takes the right to write replies (c.writer and c.conn for
// writing), waiting at most timeout when timeout > 0.
func (c *clientHandler) lockReplies(timeout time.Duration) bool {
	mu := c.replies()
	if timeout <= 0 {
		mu <- struct{}{}

		return true
	}

	t := time.NewTimer(timeout)
	defer t.Stop()

	select {
	case mu <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (c *clientHandler) unlockReplies() { <-c.replies() }

// replies returns the lock, a channel of one.
func (c *clientHandler) replies() chan struct{} {
	c.replyOnce.Do(func() { c.replyMu = make(chan struct{}, 1) })

	return c.replyMu
}

// Reply implements ClientContextReplier.
func (c *clientHandler) Reply(code int, message string, timeout time.Duration) error {
	if !c.lockReplies(timeout) {
		return ErrReplyBusy
	}
	defer c.unlockReplies()

	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("reply %d: %w", code, err)
	}

	defer func() { _ = c.conn.SetWriteDeadline(time.Time{}) }()

	if c.writer.Buffered() > 0 {
		// A line of the command loop's is half written (an MLST entry):
		// end it, so that the reply starts a line.
		_, _ = c.writer.WriteString("\r\n")
	}

	lines := getMessageLines(message)
	for i, line := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}

		if _, err := fmt.Fprintf(c.writer, "%d%s%s\r\n", code, sep, line); err != nil {
			return fmt.Errorf("reply %d: %w", code, err)
		}
	}

	if err := c.writer.Flush(); err != nil {
		return fmt.Errorf("reply %d: %w", code, err)
	}

	return nil
}
