package gateway

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// TCPState is what the kernel knows now of a session's socket (TCP_INFO):
// what tells a live peer from a phantom one. A peer that vanished shows
// keepalive probes going unanswered (Probes) or, with data in flight,
// unacknowledged segments and retransmissions (Unacked, Retransmits) while
// LastRecv grows. Durations are in nanoseconds in JSON.
type TCPState struct {
	State       string        `json:"state"`         // "established", "close-wait", ...
	RTT         time.Duration `json:"rtt"`           // smoothed round-trip time
	Unacked     uint32        `json:"unacked"`       // segments sent and not yet acknowledged
	Retransmits uint8         `json:"retransmits"`   // retransmissions of the oldest unacknowledged segment so far
	Probes      uint8         `json:"probes"`        // keepalive probes sent and not answered
	LastRecv    time.Duration `json:"last_recv"`     // since data was last received
	LastAckRecv time.Duration `json:"last_ack_recv"` // since an ACK was last received
}

// tcpStateName names a Linux TCP state (include/net/tcp_states.h).
func tcpStateName(st uint8) string {
	names := [...]string{1: "established", "syn-sent", "syn-recv", "fin-wait1", "fin-wait2", "time-wait",
		"close", "close-wait", "last-ack", "listen", "closing", "new-syn-recv"}
	if int(st) < len(names) {
		return names[st]
	}
	return ""
}

// TCPState reads the session's TCP_INFO from the kernel.
func (s *Session) TCPState() (TCPState, error) {
	info, err := s.tcpInfo()
	if err != nil {
		return TCPState{}, err
	}
	st := TCPState{
		RTT: time.Duration(info.Rtt) * time.Microsecond, Unacked: info.Unacked, Retransmits: info.Retransmits,
		Probes: info.Probes, LastRecv: time.Duration(info.Last_data_recv) * time.Millisecond,
		LastAckRecv: time.Duration(info.Last_ack_recv) * time.Millisecond,
	}
	st.State = tcpStateName(info.State)
	return st, nil
}

// errSocketClosed is tcpInfo's error for a socket already closed here.
var errSocketClosed = errors.New("gateway: tcp info: socket closed")

// tcpInfo is getsockopt(TCP_INFO) on the session's socket.
func (s *Session) tcpInfo() (*unix.TCPInfo, error) {
	if s.tcp == nil {
		return nil, errors.New("gateway: not a TCP connection")
	}
	raw, err := s.tcp.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSocketClosed, err)
	}
	var info *unix.TCPInfo
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", errSocketClosed, err)
	}
	if gerr != nil {
		return nil, wrapf("tcp info: %w", gerr)
	}
	return info, nil
}

// PeerClosed reports whether the client has ended the session's connection
// as far as the kernel knows now: a FIN or a reset received (the socket
// in close-wait, last-ack or closed), or the socket already closed here,
// whether or not the frontend has read to that end yet. FTP asks it before
// committing an upload whose data connection closed: a client killed
// mid-upload closes its control connection first (a process's sockets
// close in descriptor order), and its data connection's clean FIN must not
// commit a truncated file. A session not on TCP reports false.
func (s *Session) PeerClosed() bool {
	if s.tcp == nil {
		return false
	}
	info, err := s.tcpInfo()
	if err != nil {
		return errors.Is(err, errSocketClosed)
	}
	switch tcpStateName(info.State) {
	case "close-wait", "last-ack", "close", "closing", "time-wait":
		return true
	}
	return false
}
