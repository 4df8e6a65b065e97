package refserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// VSFTPD is a running vsftpd with one local user.
type VSFTPD struct {
	Addr     string // control connection, 127.0.0.1:port
	User     string // the throwaway user's login name
	Password string
	UID, GID int
	// Dir is the user's home directory, which vsftpd chroots the session
	// into: "/" over FTP. It holds nothing else.
	Dir string
	// PassiveLo and PassiveHi bound the passive port range.
	PassiveLo, PassiveHi int
	// Config is the directory with vsftpd's configuration and log.
	Config string
}

// StartVSFTPD runs Debian's vsftpd in the foreground (background=NO) with
// its own configuration: listen=YES on 127.0.0.1 and a free port, a local
// user (PAM service vsftpd) with write_enable, local_umask=022,
// chmod_enable, mdtm_write, a passive range of 20 free ports, chroot into
// the user's home (allow_writeable_chroot), seccomp_sandbox=NO (the
// sandbox kills the session in this container), setproctitle off, its own
// secure_chroot_dir. Everything stops and is removed in t.Cleanup,
// vsftpd's per-connection processes (each a session of its own) included.
func StartVSFTPD(t testing.TB) *VSFTPD {
	t.Helper()
	tools := require(t, "vsftpd")
	base := workDir(t, "vsftpd")
	u := addUser(t, tools, filepath.Join(base, "home"))
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	lo, hi := freeRange(t, 20)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(base, "vsftpd.conf")
	text := fmt.Sprintf(`listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=%d
background=NO
anonymous_enable=NO
local_enable=YES
pam_service_name=vsftpd
userlist_enable=NO
chroot_local_user=YES
allow_writeable_chroot=YES
write_enable=YES
local_umask=022
chmod_enable=YES
mdtm_write=YES
pasv_enable=YES
pasv_min_port=%d
pasv_max_port=%d
pasv_address=127.0.0.1
port_enable=YES
connect_from_port_20=NO
xferlog_enable=NO
dirmessage_enable=NO
use_localtime=NO
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
setproctitle_enable=NO
secure_chroot_dir=%s
ftpd_banner=vsftpd refserver
`, port, lo, hi, empty)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "vsftpd", filepath.Join(base, "vsftpd.log"), tools["vsftpd"], conf)
	d.logOnFailure(t)
	d.waitBanner(t, addr, "220")
	return &VSFTPD{Addr: addr, User: u.Name, Password: u.Password, UID: u.UID, GID: u.GID,
		Dir: u.Home, PassiveLo: lo, PassiveHi: hi, Config: base}
}
