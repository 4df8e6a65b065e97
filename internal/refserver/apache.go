package refserver

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Paths of Debian's Apache (package apache2) and the modules a WebDAV
// share needs.
const (
	apacheBin     = "/usr/sbin/apache2"
	apacheModules = "/usr/lib/apache2/modules"
)

// ApacheDAV is a running Apache httpd serving one directory over WebDAV
// with mod_dav and mod_dav_fs, the WebDAV server most others are measured
// against (litmus was written for it).
type ApacheDAV struct {
	URL      string // http://127.0.0.1:port, the share at "/"
	User     string // the throwaway user Apache's worker runs as
	UID, GID int
	// Dir is the shared directory, the throwaway user's home: "/" over
	// WebDAV. It holds nothing else.
	Dir string
	// Config is the directory with httpd.conf, the lock database and the
	// error log.
	Config string
}

// StartApacheDAV runs Debian's apache2 in the foreground (-DFOREGROUND,
// the prefork MPM) with its own configuration and no other: Listen on
// 127.0.0.1 and a free port, the worker as a throwaway user (the
// server's files are its own, as an agent's are its user's), `Dav On`
// and no authentication on the user's home as DocumentRoot, no
// directory index, DavDepthInfinity off (its default), and the umask of
// the test process ([Umask]), which the server inherits. Everything stops
// and is removed in t.Cleanup.
func StartApacheDAV(t testing.TB) *ApacheDAV {
	t.Helper()
	tools := require(t, apacheBin, filepath.Join(apacheModules, "mod_dav_fs.so"))
	base := workDir(t, "apache")
	u := addUser(t, tools, filepath.Join(base, "home"))
	run := filepath.Join(base, "run") // the lock database's: the worker's to write
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(base, "httpd.conf")
	text := fmt.Sprintf(`ServerRoot %[1]s
ServerName 127.0.0.1
Listen %[2]s
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
LogLevel info
LoadModule mpm_prefork_module %[3]s/mod_mpm_prefork.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
LoadModule dav_module %[3]s/mod_dav.so
LoadModule dav_fs_module %[3]s/mod_dav_fs.so
User %[4]s
Group %[4]s
StartServers 1
MinSpareServers 1
MaxSpareServers 2
DavLockDB %[5]s/davlock
DocumentRoot %[6]s
<Directory />
  Require all denied
  AllowOverride None
</Directory>
<Directory %[6]s>
  Dav On
  Require all granted
  AllowOverride None
</Directory>
`, base, addr, apacheModules, u.Name, run, u.Home)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "apache2", filepath.Join(base, "apache2.log"), tools[apacheBin], "-f", conf, "-DFOREGROUND")
	d.logOnFailure(t, filepath.Join(base, "error.log"))
	url := "http://" + addr
	d.waitHTTP(t, url+"/")
	return &ApacheDAV{URL: url, User: u.Name, UID: u.UID, GID: u.GID, Dir: u.Home, Config: base}
}

// waitHTTP requests url until the server answers, the daemon exits, or
// startTimeout passes.
func (d *daemon) waitHTTP(t testing.TB, url string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			t.Fatalf("refserver: %s exited before answering: %v", d.name, d.err)
		default:
		}
		resp, err := c.Head(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("refserver: %s did not answer at %s within %v: %v", d.name, url, startTimeout, last)
}
