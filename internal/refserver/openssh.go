package refserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Paths of Debian's OpenSSH server (package openssh-server).
const (
	SSHDPath       = "/usr/sbin/sshd"
	SFTPServerPath = "/usr/lib/openssh/sftp-server"
)

// OpenSSH is a running sshd whose sftp subsystem is Debian's sftp-server.
type OpenSSH struct {
	Addr     string     // 127.0.0.1:port
	User     string     // the throwaway user's login name
	Password string     // its password (password authentication is on)
	Signer   ssh.Signer // its key (in the server's AuthorizedKeysFile)
	HostKey  ssh.PublicKey
	UID, GID int
	// Dir is the user's home directory, where sftp-server starts: SFTP
	// relative paths act in it, and it holds nothing else.
	Dir string
	// Config is the directory with sshd's configuration, keys and log.
	Config string
}

// StartOpenSSH runs sshd -D -e -f CONFIG on 127.0.0.1 with a free port,
// a fresh ed25519 host key, its own PidFile, UsePAM no, StrictModes no,
// password and public key authentication for a throwaway user and
// "Subsystem sftp /usr/lib/openssh/sftp-server -u 022". Everything stops
// and is removed in t.Cleanup.
func StartOpenSSH(t testing.TB) *OpenSSH {
	t.Helper()
	tools := require(t, SSHDPath, SFTPServerPath, "ssh-keygen")
	base := workDir(t, "sshd")
	u := addUser(t, tools, filepath.Join(base, "home"))
	// Privilege separation needs /run/sshd (made by the package's init
	// script, which does not run here). Left in place: harmless, and
	// another test may be using it.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(base, "ssh_host_ed25519_key")
	run(t, tools["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", "refserver", "-f", hostKey)
	signer, line, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(base, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(base, "sshd_config")
	text := fmt.Sprintf(`# refserver: a throwaway sshd for one test
ListenAddress %s
AddressFamily inet
HostKey %s
PidFile %s
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers %s
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile %s
AuthorizedPrincipalsFile none
HostbasedAuthentication no
IgnoreRhosts yes
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 100
MaxSessions 50
MaxAuthTries 6
LoginGraceTime 30
ClientAliveInterval 0
LogLevel VERBOSE
Subsystem sftp %s -u 022
`, addr, hostKey, filepath.Join(base, "sshd.pid"), u.Name, authKeys, tools[SFTPServerPath])
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// -t checks the configuration first, for a clear error.
	run(t, tools[SSHDPath], "-t", "-f", conf)
	d := startDaemon(t, "sshd", filepath.Join(base, "sshd.log"), tools[SSHDPath], "-D", "-e", "-f", conf)
	d.logOnFailure(t)
	d.waitBanner(t, addr, "SSH-2.0-")
	hk, err := readHostKey(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return &OpenSSH{Addr: addr, User: u.Name, Password: u.Password, Signer: signer, HostKey: hk,
		UID: u.UID, GID: u.GID, Dir: u.Home, Config: base}
}

// ClientConfig is an SSH client configuration that logs in as the user
// with its key and password, and checks the server's host key.
func (s *OpenSSH) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer), ssh.Password(s.Password)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	}
}

// KillSessions kills every process of the throwaway user: the SFTP
// sessions, and an sftp-server that no longer reads its requests (one
// copying a file into itself never ends, and fills the disk). sshd's
// listener, which runs as root, goes on.
func (s *OpenSSH) KillSessions() {
	killPids(processesOf(s.UID), syscall.SIGKILL)
}

// Dial logs in over SSH; the connection closes in t.Cleanup.
func (s *OpenSSH) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("refserver: ssh to %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
