// Package sftp is upgate's SFTP frontend: an SSH server (x/crypto/ssh) on
// the gateway's accept layer that serves the "sftp" subsystem with
// pkg/sftp's request server over the user's backend filesystem, serves
// the legacy SCP protocol ("scp -t" and "scp -f": scp -O, and scp before
// OpenSSH 9) over the same filesystem, answers the few exec commands IDEs
// and checksum tools send (pwd, md5sum, sha1sum, sha256sum) from the
// agent, and refuses shells, ptys and port forwarding.
//
// Liveness: the server sends keepalive@openssh.com every
// Config.KeepaliveInterval and closes a connection after
// Config.KeepaliveMaxMissed unanswered ones (any reply, even a refusal,
// proves the client alive). That finds clients that vanished behind a relay
// that keeps the TCP connection up, which TCP keepalive cannot.
package sftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/gateway"
)

// Config configures a Server.
type Config struct {
	// HostKeys are the server's host keys. At least one is required.
	HostKeys []ssh.Signer
	// KeepaliveInterval is how often keepalive@openssh.com is sent. Zero
	// means 20 s; negative turns SSH keepalive off.
	KeepaliveInterval time.Duration
	// KeepaliveMaxMissed is how many unanswered keepalives close the
	// connection. Zero means 3.
	KeepaliveMaxMissed int
	// HandshakeTimeout bounds the SSH handshake and authentication. Zero
	// means 30 s.
	HandshakeTimeout time.Duration
	// MaxAuthTries is the number of authentication attempts per
	// connection. Zero means 6.
	MaxAuthTries int
	// MaxChannels is the most channels open at once on one connection;
	// further channel opens are rejected with ssh.ResourceShortage. Zero
	// means DefaultMaxChannels.
	MaxChannels int
	// ExecMaxFiles is the most file operands one md5sum, sha1sum or
	// sha256sum command may name; a command naming more is refused whole,
	// before any agent call. Zero means DefaultExecMaxFiles.
	ExecMaxFiles int
	// MaxHandles is the most files and directories one SFTP session may
	// hold open at once; further OPENs fail with "too many open handles".
	// Zero means DefaultMaxHandles.
	MaxHandles int
	// Logger receives the frontend's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Protocol is how SSH connections present themselves to the accept layer.
// Reads are not activity by themselves (a client's replies to the server's
// keepalives are not); the server touches the session for every SFTP
// request, exec and client keepalive. A refusal is an SSH disconnect with
// a reason, which OpenSSH prints.
func Protocol() gateway.Protocol {
	return gateway.Protocol{Name: "sftp", Refuse: refuse, ReadersFollowSaves: true}
}

// refuse sends the version line and a cleartext SSH_MSG_DISCONNECT
// (RFC 4253 11.1) with reason SSH_DISCONNECT_TOO_MANY_CONNECTIONS.
func refuse(c net.Conn, reason string) {
	const msgDisconnect, tooManyConnections = 1, 12
	payload := []byte{msgDisconnect}
	payload = binary.BigEndian.AppendUint32(payload, tooManyConnections)
	payload = binary.BigEndian.AppendUint32(payload, uint32(len(reason)))
	payload = append(payload, reason...)
	payload = binary.BigEndian.AppendUint32(payload, 0) // language tag
	padding := 8 - (5+len(payload))%8
	if padding < 4 {
		padding += 8
	}
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)+padding))
	pkt = append(pkt, byte(padding))
	pkt = append(pkt, payload...)
	pkt = append(pkt, make([]byte, padding)...)
	_, _ = c.Write(append([]byte(serverVersion+"\r\n"), pkt...))
}

// serverVersion is the SSH identification string. Its software version
// names OpenSSH because upgate's SFTP is OpenSSH's: several clients
// choose how to ask by the server's name, and a name of its own made
// them ask as the SFTP drafts say, which OpenSSH does not follow. Node's
// ssh2 (the VS Code SFTP extension's library), phpseclib, libssh (KDE's
// sftp) and WinSCP send SSH_FXP_SYMLINK's two paths in the draft's order
// (link, then target) to any server not named "OpenSSH_N.M", and
// OpenSSH's order (target, then link) to one that is: upgate, which reads
// them in OpenSSH's order as sftp-server and pkg/sftp do, made those
// clients' links with the two paths swapped. So the software version is
// "OpenSSH_9.2" (the sftp-server upgate is compared with, Debian 12's)
// followed by "_upgate", which RFC 4253 allows in a software version and
// which tells a reader this is not OpenSSH itself; nothing in it is
// parsed past the minor version by any client known.
const serverVersion = "SSH-2.0-OpenSSH_9.2_upgate"

// Defaults for the zero Config.
const (
	// DefaultMaxChannels: OpenSSH's sftp and sshj (PhpStorm) open one
	// channel per connection, the VS Code SFTP extension a few, rclone one
	// plus one per hash command, closed after it. Measured (README, "What
	// one user can hold"): lftp, sshfs and OpenSSH sftp 1, rclone 2 (3 once,
	// with its logins refused at the session cap), 4 sftp -b over one OpenSSH
	// ControlMaster 4, paramiko with 8 threads on one Transport 9.
	DefaultMaxChannels = 16
	// DefaultExecMaxFiles bounds the agent calls of one hash command.
	DefaultExecMaxFiles = 100
	// DefaultMaxHandles: sshfs, rclone and lftp hold a few files open at
	// once; each open file is a stream and a descriptor on the agent.
	// Measured per SSH connection, all its SFTP channels together (so at
	// least what one channel held): lftp mirror and OpenSSH sftp put -r 1,
	// rclone up to 3, sshfs 5 (cp -a, git clone, rsync -a and git status
	// in one mount), paramiko with 8 threads on one Transport 8.
	DefaultMaxHandles = 256
)

// Gateway is what the SFTP frontend needs from the gateway, declared here
// where it is used; *gateway.Gateway implements it. A test may embed a
// real gateway and replace one method (logins that hand out another
// filesystem, say).
type Gateway interface {
	// LoginPassword verifies a password and returns the user's filesystem
	// bound to ctx, attached to sess (limits, defender, the sessions
	// view).
	LoginPassword(ctx context.Context, sess *gateway.Session, name, password string) (*gateway.Login, error)
	// HasKey reports whether key is one of name's authorized keys,
	// without logging in (SSH asks for keys the client only offers).
	HasKey(name string, key ssh.PublicKey) bool
	// LoginKey logs in a user whose possession of key the SSH layer
	// verified.
	LoginKey(ctx context.Context, sess *gateway.Session, name string, key ssh.PublicKey) (*gateway.Login, error)
}

// Server serves SFTP for a gateway.
type Server struct {
	gw  Gateway
	cfg Config
	log *slog.Logger

	// mu guards lis.
	mu  sync.Mutex
	lis net.Listener
	wg  sync.WaitGroup // connection goroutines
}

// New returns a server over gw (a *gateway.Gateway); Serve starts it.
func New(gw Gateway, cfg Config) (*Server, error) {
	if len(cfg.HostKeys) == 0 {
		return nil, errors.New("sftp: no host key")
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = 20 * time.Second
	}
	if cfg.KeepaliveMaxMissed <= 0 {
		cfg.KeepaliveMaxMissed = 3
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxChannels <= 0 {
		cfg.MaxChannels = DefaultMaxChannels
	}
	if cfg.ExecMaxFiles <= 0 {
		cfg.ExecMaxFiles = DefaultExecMaxFiles
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{gw: gw, cfg: cfg, log: log.With("component", "sftp")}, nil
}

// Serve serves SSH on lis, which should come from the gateway's Listen
// with Protocol(). It returns nil after Close or the gateway's Shutdown,
// once every connection it started has ended.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	s.lis = lis
	s.mu.Unlock()
	s.log.Info("serving SFTP", "addr", lis.Addr().String())
	defer s.wg.Wait()
	for {
		conn, err := lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("sftp: accept: %w", err)
		}
		gc, ok := conn.(*gateway.Conn)
		if !ok {
			conn.Close()
			return errors.New("sftp: listener is not the gateway's accept layer")
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(gc)
		}()
	}
}

// Close stops accepting. Live sessions are the gateway's to close.
func (s *Server) Close() error {
	s.mu.Lock()
	lis := s.lis
	s.mu.Unlock()
	if lis == nil {
		return nil
	}
	return lis.Close()
}

// recovered, deferred at the top of a goroutine the frontend starts,
// turns a panic there into a log line with its stack, so that a bug met
// by one connection ends that connection (or channel) and not the
// process.
func recovered(log *slog.Logger, where string) {
	if r := recover(); r != nil {
		log.Error("panic in SFTP frontend: closing the "+where, "panic", r, "stack", string(debug.Stack()))
	}
}
