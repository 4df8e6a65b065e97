package gateway

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// SocketOptions are the dead-peer settings of one TCP socket, as the
// kernel reports them.
type SocketOptions struct {
	Keepalive         bool          `json:"keepalive"`
	KeepaliveIdle     time.Duration `json:"keepalive_idle"`
	KeepaliveInterval time.Duration `json:"keepalive_interval"`
	KeepaliveCount    int           `json:"keepalive_count"`
	UserTimeout       time.Duration `json:"user_timeout"`
}

func (o SocketOptions) String() string {
	if !o.Keepalive {
		return fmt.Sprintf("keepalive off, user timeout %v", o.UserTimeout)
	}
	return fmt.Sprintf("keepalive %v/%v/%d, user timeout %v", o.KeepaliveIdle, o.KeepaliveInterval, o.KeepaliveCount, o.UserTimeout)
}

// tuneTCP turns on keepalive with the configured timers and sets
// TCP_USER_TIMEOUT, which bounds how long sent data may stay
// unacknowledged: keepalive never probes a socket with data in flight.
func tuneTCP(c *net.TCPConn, ka net.KeepAliveConfig, userTimeout time.Duration) error {
	if err := c.SetKeepAliveConfig(ka); err != nil {
		return fmt.Errorf("set keepalive: %w", err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
	}
	return nil
}

// ReadSocketOptions reads a TCP socket's keepalive and user-timeout
// settings back from the kernel with getsockopt.
func ReadSocketOptions(c *net.TCPConn) (SocketOptions, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return SocketOptions{}, err
	}
	var o SocketOptions
	var gerr error
	get := func(fd int, level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil && gerr == nil {
			gerr = err
		}
		return v
	}
	if err := raw.Control(func(fd uintptr) {
		s := int(fd)
		o.Keepalive = get(s, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
		o.KeepaliveIdle = time.Duration(get(s, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
		o.KeepaliveInterval = time.Duration(get(s, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second
		o.KeepaliveCount = get(s, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		o.UserTimeout = time.Duration(get(s, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
	}); err != nil {
		return SocketOptions{}, err
	}
	return o, gerr
}
