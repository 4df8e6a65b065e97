package server_test

// Security tests: over real FTP and SFTP clients, every way of naming a
// path outside a user's root (".." in every spelling, absolute paths,
// symbolic links, another user's directory, NUL and control bytes,
// over-long names) and a gateway holding the wrong agent token. Each
// attack snapshots the directory holding the agent root and a sibling
// "outside" directory before and after: nothing outside the user's root
// may change, every change inside it must be the one predicted, every
// refusal must be a clear protocol error, and the session must still work.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

const (
	// secOpTimeout bounds every client operation: only a hang crosses it.
	secOpTimeout = 60 * time.Second
	secSecret    = "TOP-SECRET: outside the agent root"
	secXContent  = "alice's own x"
	secPayload   = "written by an attack"
)

// secT0 is the modification time attacks set with MFMT and SETSTAT.
var secT0 = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// secEnv is a gateway whose embedded agent serves base/agent, next to
// base/outside. Users alice and bob (password "pw") have their roots in
// base/agent/<user>.
type secEnv struct {
	srv     *server.Server
	base    string // the snapshot's scope
	root    string // the embedded agent's root: base/agent
	outside string // base/outside
	hash    string // bcrypt of "pw"
}

// secNewEnv lays out the files: base/outside/{secret,sub/f}, base/x and
// base/agent/x (what "../../x" and "../x" from a user root would hit),
// bob's files, and alice's empty root.
func secNewEnv(t *testing.T) *secEnv {
	t.Helper()
	base := t.TempDir()
	e := &secEnv{base: base, root: filepath.Join(base, "agent"), outside: filepath.Join(base, "outside")}
	for name, content := range map[string]string{
		"outside/secret":   secSecret,
		"outside/sub/f":    secSecret + " (sub)",
		"x":                "base x: two levels above a user root",
		"agent/x":          "agent root x: one level above a user root",
		"agent/bob/x":      "bob's private x",
		"agent/bob/secret": "bob's private secret",
	} {
		secWrite(t, filepath.Join(base, filepath.FromSlash(name)), content)
	}
	if err := os.MkdirAll(filepath.Join(e.root, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	e.hash = string(h)
	return e
}

// config is the gateway's configuration: FTP and SFTP on loopback, the
// embedded agent, alice and bob.
func (e *secEnv) config(t *testing.T) *config.Config {
	t.Helper()
	cfg := gwtest.Config(t, e.root, map[string]string{"alice": "pw", "bob": "pw"})
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
	return cfg
}

func (e *secEnv) start(t *testing.T, cfg *config.Config) {
	t.Helper()
	e.srv = gwtest.Run(t, cfg)
}

func secStart(t *testing.T) *secEnv {
	e := secNewEnv(t)
	e.start(t, e.config(t))
	return e
}

func secWrite(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func secSymlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func secSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// userPath is user path L (clean, absolute) on disk.
func (e *secEnv) userPath(user, L string) string {
	return filepath.Join(e.root, user, filepath.FromSlash(L))
}

// reset gives the user's root back its fixtures and nothing else: x (a
// file), emptydir and a/b; the root's mode is 0755.
func (e *secEnv) reset(t *testing.T, user string) {
	t.Helper()
	dir := filepath.Join(e.root, user)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if err := os.RemoveAll(filepath.Join(dir, en.Name())); err != nil {
			t.Fatal(err)
		}
	}
	secWrite(t, filepath.Join(dir, "x"), secXContent)
	for _, d := range []string{"emptydir", "a/b"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// secEntry is one file's state in a snapshot.
type secEntry struct {
	mode  fs.FileMode
	size  int64
	sum   string
	link  string
	mtime time.Time
}

func (en secEntry) String() string {
	switch {
	case en.mode&fs.ModeSymlink != 0:
		return "link -> " + en.link
	case en.mode.IsDir():
		return fmt.Sprintf("dir %v", en.mode.Perm())
	}
	return fmt.Sprintf("file %v, %d bytes, sha256 %.12s, mtime %s", en.mode.Perm(), en.size, en.sum, en.mtime.UTC().Format(time.RFC3339))
}

// snap records every entry under base (links not followed): path, mode,
// size, sha256, link target, mtime.
func (e *secEnv) snap(t *testing.T) map[string]secEntry {
	t.Helper()
	out := make(map[string]secEntry)
	err := filepath.WalkDir(e.base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(e.base, p)
		if err != nil {
			return err
		}
		en := secEntry{mode: fi.Mode(), mtime: fi.ModTime()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			en.link, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			en.size, en.sum = fi.Size(), secSum(string(b))
		}
		out[filepath.ToSlash(rel)] = en
		return err
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return out
}

// waitNoTemp gives an aborted upload's temp file a moment to go (the
// agent removes it when the stream ends, which may be just after the
// reply); one still there after that shows up as a change.
func (e *secEnv) waitNoTemp() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		_ = filepath.WalkDir(e.base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), agent.TempPrefix) {
				found = true
			}
			return nil
		})
		if !found || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// secRel returns p relative to dir ("." for dir itself) and whether p is
// dir or inside it.
func secRel(dir, p string) (string, bool) {
	if p == dir {
		return ".", true
	}
	rest, ok := strings.CutPrefix(p, dir+"/")
	return rest, ok
}

// secChanges lists what differs between two snapshots. Directory sizes
// are file-system noise; so are the mtimes of directories inside userDir
// (the entries created or removed in them are changes of their own).
func secChanges(before, after map[string]secEntry, userDir string) map[string]string {
	out := make(map[string]string)
	for p, b := range before {
		a, ok := after[p]
		if !ok {
			out[p] = "removed (was " + b.String() + ")"
			continue
		}
		same := a.mode == b.mode && a.link == b.link
		if _, inUser := secRel(userDir, p); !a.mode.IsDir() {
			same = same && a.size == b.size && a.sum == b.sum && a.mtime.Equal(b.mtime)
		} else if !inUser {
			same = same && a.mtime.Equal(b.mtime)
		}
		if !same {
			out[p] = fmt.Sprintf("changed: %s -> %s", b, a)
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			out[p] = "created: " + a.String()
		}
	}
	return out
}

// expect asserts that since before nothing changed outside the user's
// root, and that every change inside it is in want. want maps a path
// relative to the user's root ("." is the root) to its state now:
// "file:CONTENT", "dir", "tree" (a directory that came with its
// contents), "link:TARGET", "gone", "mode:750" or "mtime" (secT0).
// Entries under a "gone" or "tree" path may change too.
func (e *secEnv) expect(t *testing.T, before map[string]secEntry, user string, want map[string]string) {
	t.Helper()
	e.waitNoTemp()
	after := e.snap(t)
	userDir := "agent/" + user
	covered := func(rel string) bool {
		if _, ok := want[rel]; ok {
			return true
		}
		for p := path.Dir(rel); p != "." && p != "/"; p = path.Dir(p) {
			if w := want[p]; w == "gone" || w == "tree" {
				return true
			}
		}
		return false
	}
	changes := secChanges(before, after, userDir)
	keys := make([]string, 0, len(changes))
	for p := range changes {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	for _, p := range keys {
		rel, in := secRel(userDir, p)
		switch {
		case !in:
			t.Errorf("SECURITY: %s changed outside %s's root: %s", p, user, changes[p])
		case !covered(rel):
			t.Errorf("unexpected change in %s's root: %s: %s", user, rel, changes[p])
		}
	}
	for rel, w := range want {
		p := userDir
		if rel != "." {
			p += "/" + rel
		}
		a, ok := after[p]
		kind, arg, _ := strings.Cut(w, ":")
		bad := false
		switch {
		case kind == "gone":
			bad = ok
		case !ok:
			bad = true
		case kind == "dir" || kind == "tree":
			bad = !a.mode.IsDir()
		case kind == "file":
			bad = !a.mode.IsRegular() || a.sum != secSum(arg)
		case kind == "link":
			bad = a.mode&fs.ModeSymlink == 0 || a.link != arg
		case kind == "mode":
			m, _ := strconv.ParseUint(arg, 8, 32)
			bad = a.mode.Perm() != fs.FileMode(m)
		case kind == "mtime":
			bad = !a.mtime.Equal(secT0)
		default:
			t.Fatalf("bad want %q", w)
		}
		if bad {
			state := "absent"
			if ok {
				state = a.String()
			}
			t.Errorf("%s in %s's root is %s, want %s", rel, user, state, w)
		}
	}
}

// secSplit returns the non-empty components of a slash path.
func secSplit(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// secEscapes reports whether target, resolved lexically from dir (an
// absolute path), climbs above "/".
func secEscapes(dir, target string) bool {
	return !strings.HasPrefix(path.Join("/ROOT", dir, target)+"/", "/ROOT/")
}

// secRelPath is target (absolute) relative to dir (absolute).
func secRelPath(dir, target string) string {
	d, tt := secSplit(dir), secSplit(target)
	i := 0
	for i < len(d) && i < len(tt) && d[i] == tt[i] {
		i++
	}
	var parts []string
	for range d[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, tt[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

// resolve follows user path L (clean, absolute) on disk the way the agent
// must: links in every component but the last are followed, the last too
// when follow is set, and a link leading out of the user's root (an
// absolute target, or one climbing above the root) is an escape, which
// the agent refuses. It returns where L leads and what is there: "file",
// "dir", "link" (a last component not followed), "none" (only the last
// component is missing), "noparent", "notdir", "escape" or "loop".
func (e *secEnv) resolve(user, L string, follow bool) (string, string) {
	todo := secSplit(L)
	cur := "/"
	for hops := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		next := path.Join(cur, name)
		fi, err := os.Lstat(e.userPath(user, next))
		switch {
		case err != nil && len(todo) == 0:
			return next, "none"
		case err != nil:
			return next, "noparent"
		case fi.Mode()&fs.ModeSymlink != 0 && (len(todo) > 0 || follow):
			if hops++; hops > 40 {
				return next, "loop"
			}
			target, _ := os.Readlink(e.userPath(user, next))
			if path.IsAbs(target) || secEscapes(cur, target) {
				return next, "escape"
			}
			todo = append(secSplit(path.Join(cur, target)), todo...)
			cur = "/"
		case len(todo) > 0 && !fi.IsDir():
			return next, "notdir"
		default:
			cur = next
		}
	}
	fi, err := os.Lstat(e.userPath(user, cur))
	switch {
	case err != nil:
		return cur, "none"
	case fi.Mode()&fs.ModeSymlink != 0:
		return cur, "link"
	case fi.IsDir():
		return cur, "dir"
	}
	return cur, "file"
}

// secWithin runs fn and fails the test if it does not return within
// secOpTimeout: a hang. (The test's cleanup then closes the connections,
// which ends fn.)
func secWithin(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(secOpTimeout):
		t.Fatalf("%s: no answer within %v: the server hangs", what, secOpTimeout)
	}
}

// secLeak fails the test if data holds anything from outside the user's
// root.
func secLeak(t *testing.T, what string, data []byte) {
	t.Helper()
	for _, s := range []string{"TOP-SECRET", "bob's private", "agent root x", "base x", "root:x:0:0"} {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("SECURITY: %s returned data from outside the root: %q", what, data)
		}
	}
}

// secClient is one protocol's view of the operations attacks use. Errors
// are the server's replies: *textproto.Error for FTP, the pkg/sftp error
// for SFTP.
type secClient interface {
	put(p string, data []byte) error
	get(p string) ([]byte, error)
	mkdir(p string) error
	remove(p string) error
	rmdir(p string) error
	rename(from, to string) error
	chmod(p string, mode fs.FileMode) error
	chtimes(p string, t time.Time) error
	stat(p string) (size int64, isDir bool, err error)
	list(p string) ([]string, error)
	symlink(target, link string) error
	hash(p string) (string, error)
	alive() error
	// clear checks that err is a clear refusal in the protocol's terms.
	clear(t *testing.T, what string, err error)
}

// secDeadlineConn bounds every read and write.
type secDeadlineConn struct{ net.Conn }

func (c secDeadlineConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(secOpTimeout))
	return c.Conn.Read(p)
}

func (c secDeadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(secOpTimeout))
	return c.Conn.Write(p)
}

func secDial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return secDeadlineConn{c}, nil
}

// secRaw is a raw FTP control connection: commands go out byte for byte.
type secRaw struct {
	nc net.Conn
	tp *textproto.Conn
}

func secDialRaw(t *testing.T, addr, user string) *secRaw {
	t.Helper()
	nc, err := secDial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &secRaw{nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { r.tp.Close() })
	if _, _, err := r.tp.ReadResponse(220); err != nil {
		t.Fatalf("FTP greeting: %v", err)
	}
	for _, c := range []struct {
		line string
		code int
	}{{"USER " + user, 331}, {"PASS pw", 230}, {"TYPE I", 200}} {
		if err := r.expect(c.line, c.code); err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
	}
	return r
}

// cmd sends one line as is and reads the reply.
func (r *secRaw) cmd(line string) (int, string, error) {
	if _, err := io.WriteString(r.nc, line+"\r\n"); err != nil {
		return 0, "", err
	}
	return r.tp.ReadResponse(0)
}

// expect sends line and turns any reply but want into a *textproto.Error.
func (r *secRaw) expect(line string, want int) error {
	code, msg, err := r.cmd(line)
	if err != nil {
		return err
	}
	if code != want {
		return &textproto.Error{Code: code, Msg: msg}
	}
	return nil
}

// stor uploads data as name over an EPSV data connection.
func (r *secRaw) stor(name string, data []byte) error {
	code, msg, err := r.cmd("EPSV")
	if err != nil {
		return err
	}
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	if code != 229 || i < 0 || j < i {
		return fmt.Errorf("EPSV: %d %s", code, msg)
	}
	host, _, _ := net.SplitHostPort(r.nc.RemoteAddr().String())
	dc, err := secDial("tcp", net.JoinHostPort(host, msg[i+4:j]))
	if err != nil {
		return err
	}
	defer dc.Close()
	code, msg, err = r.cmd("STOR " + name)
	if err != nil {
		return err
	}
	if code != 150 && code != 125 {
		return &textproto.Error{Code: code, Msg: msg}
	}
	if _, err := dc.Write(data); err != nil {
		return err
	}
	dc.Close()
	code, msg, err = r.tp.ReadResponse(0)
	if err != nil {
		return err
	}
	if code != 226 {
		return &textproto.Error{Code: code, Msg: msg}
	}
	return nil
}

// secFTP is jlaffaye/ftp for transfers, listings and the common
// commands, plus a raw control connection of the same user for MKD,
// RNFR/RNTO, SITE and MFMT, which it sends byte for byte.
type secFTP struct {
	c   *ftp.ServerConn
	raw *secRaw
}

func secDialFTP(t *testing.T, e *secEnv, user, cwd string) *secFTP {
	t.Helper()
	addr := e.srv.FTPAddr.String()
	c, err := ftp.Dial(addr, ftp.DialWithDialFunc(secDial))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Quit() })
	if err := c.Login(user, "pw"); err != nil {
		t.Fatal(err)
	}
	f := &secFTP{c: c, raw: secDialRaw(t, addr, user)}
	if cwd != "/" {
		f.chdir(t, cwd)
	}
	return f
}

// chdir makes cwd the working directory of both connections.
func (f *secFTP) chdir(t *testing.T, cwd string) {
	t.Helper()
	if err := f.c.ChangeDir(cwd); err != nil {
		t.Fatal(err)
	}
	if err := f.raw.expect("CWD "+cwd, 250); err != nil {
		t.Fatal(err)
	}
}

// put is STOR; a name with control bytes goes out on the raw connection,
// byte for byte.
func (f *secFTP) put(p string, data []byte) error {
	if strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return f.raw.stor(p, data)
	}
	return f.c.Stor(p, bytes.NewReader(data))
}

func (f *secFTP) get(p string) ([]byte, error) {
	resp, err := f.c.Retr(p)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp)
	if cerr := resp.Close(); cerr != nil {
		return b, cerr
	}
	return b, err
}

func (f *secFTP) mkdir(p string) error  { return f.raw.expect("MKD "+p, 257) }
func (f *secFTP) remove(p string) error { return f.c.Delete(p) }
func (f *secFTP) rmdir(p string) error  { return f.c.RemoveDir(p) }

func (f *secFTP) rename(from, to string) error {
	if err := f.raw.expect("RNFR "+from, 350); err != nil {
		return err
	}
	return f.raw.expect("RNTO "+to, 250)
}

func (f *secFTP) chmod(p string, mode fs.FileMode) error {
	return f.raw.expect(fmt.Sprintf("SITE CHMOD %o %s", mode, p), 200)
}

func (f *secFTP) chtimes(p string, t time.Time) error {
	return f.raw.expect("MFMT "+t.UTC().Format("20060102150405")+" "+p, 213)
}

// stat is SIZE; ftpserverlib refuses SIZE of a directory with "is a
// directory", which tells that it is one.
func (f *secFTP) stat(p string) (int64, bool, error) {
	n, err := f.c.FileSize(p)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code == 550 && strings.HasSuffix(te.Msg, " is a directory") {
		return 0, true, nil
	}
	return n, false, err
}

func (f *secFTP) list(p string) ([]string, error) {
	entries, err := f.c.List(p)
	var names []string
	for _, en := range entries {
		if en.Name != "." && en.Name != ".." {
			names = append(names, en.Name)
		}
	}
	return names, err
}

func (f *secFTP) symlink(target, link string) error {
	return f.raw.expect("SITE SYMLINK "+target+" "+link, 200)
}

var secHex64 = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

func (f *secFTP) hash(p string) (string, error) {
	code, msg, err := f.raw.cmd("XSHA256 " + p)
	if err != nil {
		return "", err
	}
	if code != 250 {
		return "", &textproto.Error{Code: code, Msg: msg}
	}
	return secHex64.FindString(msg), nil
}

func (f *secFTP) alive() error {
	if err := f.c.NoOp(); err != nil {
		return err
	}
	return f.raw.expect("NOOP", 200)
}

func (f *secFTP) clear(t *testing.T, what string, err error) {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Errorf("%s: no FTP error reply but %T: %v", what, err, err)
		return
	}
	if te.Code < 500 || te.Code > 599 || strings.TrimSpace(te.Msg) == "" {
		t.Errorf("%s: reply %d %q, want a 5xx reply with a reason", what, te.Code, te.Msg)
	}
	secVague(t, what, te.Msg)
}

// secVague fails on replies that hide the reason behind a crash.
func secVague(t *testing.T, what, msg string) {
	t.Helper()
	for _, s := range []string{"panic", "internal error", "goroutine"} {
		if strings.Contains(strings.ToLower(msg), s) {
			t.Errorf("%s: reply %q is a crash, not a reason", what, msg)
		}
	}
}

// secSFTP is pkg/sftp over x/crypto/ssh; hash runs sha256sum on the same
// SSH connection.
type secSFTP struct {
	sc *ssh.Client
	c  *sftp.Client
}

func secDialSFTP(t *testing.T, e *secEnv, user string) *secSFTP {
	t.Helper()
	sc, err := ssh.Dial("tcp", e.srv.SFTPAddr.String(), &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password("pw")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		sc.Close()
	})
	return &secSFTP{sc: sc, c: c}
}

func (s *secSFTP) put(p string, data []byte) error {
	f, err := s.c.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); cerr != nil {
		return cerr
	}
	return werr
}

func (s *secSFTP) get(p string) ([]byte, error) {
	f, err := s.c.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func (s *secSFTP) mkdir(p string) error         { return s.c.Mkdir(p) }
func (s *secSFTP) remove(p string) error        { return s.c.Remove(p) }
func (s *secSFTP) rmdir(p string) error         { return s.c.RemoveDirectory(p) }
func (s *secSFTP) rename(from, to string) error { return s.c.Rename(from, to) }

func (s *secSFTP) chmod(p string, mode fs.FileMode) error { return s.c.Chmod(p, mode) }

func (s *secSFTP) chtimes(p string, t time.Time) error { return s.c.Chtimes(p, t, t) }

func (s *secSFTP) stat(p string) (int64, bool, error) {
	fi, err := s.c.Stat(p)
	if err != nil {
		return 0, false, err
	}
	return fi.Size(), fi.IsDir(), nil
}

func (s *secSFTP) list(p string) ([]string, error) {
	fis, err := s.c.ReadDir(p)
	var names []string
	for _, fi := range fis {
		names = append(names, fi.Name())
	}
	return names, err
}

func (s *secSFTP) symlink(target, link string) error { return s.c.Symlink(target, link) }

// secExecError is a failed remote command with what it printed.
type secExecError struct {
	err    error
	stderr string
}

func (e *secExecError) Error() string { return e.err.Error() + ": " + e.stderr }
func (e *secExecError) Unwrap() error { return e.err }

func (s *secSFTP) hash(p string) (string, error) {
	sess, err := s.sc.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var out, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &stderr
	if err := sess.Run("sha256sum '" + p + "'"); err != nil {
		return "", &secExecError{err, stderr.String()}
	}
	sum, _, _ := strings.Cut(out.String(), " ")
	return sum, nil
}

func (s *secSFTP) alive() error {
	_, err := s.c.Stat("/")
	return err
}

func (s *secSFTP) clear(t *testing.T, what string, err error) {
	t.Helper()
	var se *sftp.StatusError
	var ee *secExecError
	var exit *ssh.ExitError
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		// NO_SUCH_FILE, PERMISSION_DENIED
	case errors.As(err, &se):
		if se.Code < 2 || strings.Contains(se.Error(), `""`) {
			t.Errorf("%s: SFTP status without a reason: %v", what, se)
		}
		secVague(t, what, se.Error())
	case errors.As(err, &ee) && errors.As(err, &exit):
		if exit.ExitStatus() == 0 || strings.TrimSpace(ee.stderr) == "" {
			t.Errorf("%s: command failed without a reason: %v", what, err)
		}
		secVague(t, what, ee.stderr)
	default:
		t.Errorf("%s: no SFTP status but %T: %v", what, err, err)
	}
}

// secRun is one client session attacking as user; cwd is where its
// relative paths start.
type secRun struct {
	name string
	e    *secEnv
	user string
	c    secClient
	ftp  bool
	cwd  string
}

// runs returns the sessions that attack: FTP from "/", FTP from "/a/b"
// (when withCwd) and SFTP.
func (e *secEnv) runs(t *testing.T, user string, withCwd bool) []*secRun {
	e.reset(t, user) // "/a/b" exists for the CWD
	runs := []*secRun{{name: "ftp", e: e, user: user, c: secDialFTP(t, e, user, "/"), ftp: true, cwd: "/"}}
	if withCwd {
		runs = append(runs, &secRun{name: "ftp-in-a-b", e: e, user: user, c: secDialFTP(t, e, user, "/a/b"), ftp: true, cwd: "/a/b"})
	}
	return append(runs, &secRun{name: "sftp", e: e, user: user, c: secDialSFTP(t, e, user), cwd: "/"})
}

// land is where the server puts p: both ftpserverlib and pkg/sftp clean
// it lexically against the working directory.
func (r *secRun) land(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(r.cwd, p)
}

func (r *secRun) res(L string, follow bool) (string, string) { return r.e.resolve(r.user, L, follow) }

// rel is user path L relative to the user's root, as expect wants it.
func secRelTo(L string) string {
	if L == "/" {
		return "."
	}
	return L[1:]
}

// spec is the state of L for expect.
func (r *secRun) spec(L string) string {
	p := r.e.userPath(r.user, L)
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return "gone"
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(p)
		return "link:" + target
	case fi.IsDir():
		return "tree"
	}
	b, _ := os.ReadFile(p)
	return "file:" + string(b)
}

func (r *secRun) empty(L string) bool {
	entries, err := os.ReadDir(r.e.userPath(r.user, L))
	return err == nil && len(entries) == 0
}

// attack runs one attack as a subtest: reset the user's root, run setup,
// predict with plan (success, and then the changes), run do, and check
// the outcome, the snapshot and that the session still answers.
func (r *secRun) attack(t *testing.T, name string, setup func(t *testing.T), plan func() (bool, map[string]string), do func(t *testing.T) error) {
	t.Helper()
	t.Run(strconv.Quote(name), func(t *testing.T) {
		r.e.reset(t, r.user)
		if f, ok := r.c.(*secFTP); ok && r.cwd != "/" {
			// A rename of the working directory or a directory above
			// it took it along (as vsftpd's): back to where this run's
			// relative paths start.
			f.chdir(t, r.cwd)
		}
		if setup != nil {
			setup(t)
		}
		ok, want := plan()
		before := r.e.snap(t)
		var err error
		secWithin(t, name, func() { err = do(t) })
		switch {
		case ok && err != nil:
			t.Errorf("%s refused (%v), want success", name, err)
		case !ok && err == nil:
			t.Errorf("%s succeeded, want a refusal", name)
		case !ok:
			t.Logf("refused: %v", err)
			r.c.clear(t, name, err)
		}
		if !ok {
			want = nil
		}
		r.e.expect(t, before, r.user, want)
		secWithin(t, "the session after "+name, func() {
			if err := r.c.alive(); err != nil {
				t.Errorf("the session no longer works after %s: %v", name, err)
			}
		})
	})
}

// secOp is one command; leaf is the name attack paths end in.
type secOp struct {
	name string
	leaf string
	skip func(p string) bool
	plan func(r *secRun, p, L string) (bool, map[string]string)
	do   func(t *testing.T, r *secRun, p, L string) error
}

// planSymlink predicts a symlink from link to target: FTP (ftpserverlib)
// makes the target absolute against the working directory; an absolute
// target is taken in the user's tree and stored relative to the link; a
// relative one that climbs above the user's root is refused.
func (r *secRun) planSymlink(target, link string) (bool, map[string]string) {
	L := r.land(link)
	rp, st := r.res(L, false)
	if st != "none" {
		return false, nil
	}
	var stored string
	switch {
	case r.ftp:
		stored = secRelPath(path.Dir(L), r.land(target))
	case path.IsAbs(target):
		stored = secRelPath(path.Dir(L), path.Clean(target))
	case secEscapes(path.Dir(L), target):
		return false, nil
	default:
		stored = target
	}
	if !r.confined(path.Dir(rp), stored) {
		return false, nil // the agent checks what the link would lead to
	}
	return true, map[string]string{secRelTo(rp): "link:" + stored}
}

// confined reports whether a link in dir (a user path) holding target
// would lead inside the user's root when followed through the links that
// exist now, ".." applied after each link as the kernel does (not
// lexically): the agent refuses a link that would not.
func (r *secRun) confined(dir, target string) bool {
	var stack []string
	todo := append(secSplit(dir), strings.Split(target, "/")...)
	for hops := 0; len(todo) > 0; {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := "/" + path.Join(append(stack, elem)...)
		p := r.e.userPath(r.user, cur)
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			stack = append(stack, elem)
			continue
		}
		if hops++; hops > 40 {
			return false
		}
		next, _ := os.Readlink(p)
		if path.IsAbs(next) {
			return false
		}
		todo = append(strings.Split(next, "/"), todo...)
	}
	return true
}

func secOps() []secOp {
	follows := func(r *secRun, L string) (string, string) { return r.res(L, true) }
	return []secOp{
		{name: "put", leaf: "newfile",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := follows(r, L)
				return st == "none" || st == "file", map[string]string{secRelTo(rp): "file:" + secPayload}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.put(p, []byte(secPayload)) }},
		{name: "get", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				_, st := follows(r, L)
				return st == "file", nil
			},
			do: func(t *testing.T, r *secRun, p, L string) error {
				rp, st := follows(r, L)
				want := ""
				if st == "file" {
					b, _ := os.ReadFile(r.e.userPath(r.user, rp))
					want = string(b)
				}
				b, err := r.c.get(p)
				secLeak(t, "get "+p, b)
				if err == nil && string(b) != want {
					t.Errorf("get %q: got %q, want %q (%s in the user's root)", p, b, want, rp)
				}
				return err
			}},
		{name: "mkdir", leaf: "newdir",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := r.res(L, false)
				return st == "none", map[string]string{secRelTo(rp): "dir"}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.mkdir(p) }},
		{name: "remove", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := r.res(L, false)
				// pkg/sftp's Remove falls back to RMDIR.
				ok := st == "file" || st == "link" || !r.ftp && st == "dir" && rp != "/" && r.empty(rp)
				return ok, map[string]string{secRelTo(rp): "gone"}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.remove(p) }},
		{name: "rmdir", leaf: "emptydir",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := r.res(L, false)
				return st == "dir" && rp != "/" && r.empty(rp), map[string]string{secRelTo(rp): "gone"}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.rmdir(p) }},
		{name: "rename-from", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := r.res(L, false)
				ok := (st == "file" || st == "dir" || st == "link") && rp != "/"
				if r.ftp { // RNFR stats the source, following a link
					_, fst := follows(r, L)
					ok = ok && (fst == "file" || fst == "dir")
				}
				// A relative link that climbs, moved from a directory
				// to the root, would climb further: the agent refuses
				// the move (backend/agent/links.go).
				if spec := r.spec(rp); st == "link" && path.Dir(rp) != "/" &&
					!path.IsAbs(strings.TrimPrefix(spec, "link:")) && strings.Contains(spec, "..") {
					ok = false
				}
				return ok, map[string]string{secRelTo(rp): "gone", "renamed": r.spec(rp)}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.rename(p, "/renamed") }},
		{name: "rename-to", leaf: "moved",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := r.res(L, false)
				ok := (st == "none" || st == "file" || st == "link") && rp != "/x"
				return ok, map[string]string{"x": "gone", secRelTo(rp): "file:" + secXContent}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.rename("/x", p) }},
		{name: "chmod", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := follows(r, L)
				return st == "file" || st == "dir", map[string]string{secRelTo(rp): "mode:750"}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.chmod(p, 0o750) }},
		{name: "chtimes", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				rp, st := follows(r, L)
				return st == "file" || st == "dir", map[string]string{secRelTo(rp): "mtime"}
			},
			do: func(t *testing.T, r *secRun, p, L string) error { return r.c.chtimes(p, secT0) }},
		{name: "stat", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				_, st := follows(r, L)
				return st == "file" || st == "dir", nil
			},
			do: func(t *testing.T, r *secRun, p, L string) error {
				rp, st := follows(r, L)
				size, isDir, err := r.c.stat(p)
				if err == nil {
					fi, serr := os.Stat(r.e.userPath(r.user, rp))
					if serr != nil || isDir != (st == "dir") || !isDir && size != fi.Size() {
						t.Errorf("stat %q: size %d dir %v, want %s in the user's root", p, size, isDir, rp)
					}
				}
				return err
			}},
		{name: "list", leaf: "a",
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				_, st := follows(r, L)
				return st == "dir", nil
			},
			do: func(t *testing.T, r *secRun, p, L string) error {
				rp, _ := follows(r, L)
				var want []string
				entries, _ := os.ReadDir(r.e.userPath(r.user, rp))
				for _, en := range entries {
					want = append(want, en.Name())
				}
				got, err := r.c.list(p)
				sort.Strings(got)
				if err == nil && strings.Join(got, "\x00") != strings.Join(want, "\x00") {
					t.Errorf("list %q: %q, want %q (%s in the user's root)", p, got, want, rp)
				}
				return err
			}},
		{name: "hash", leaf: "x",
			// Both protocols parse quotes and backslashes in these.
			skip: func(p string) bool { return strings.ContainsAny(p, `\'" `) },
			plan: func(r *secRun, p, L string) (bool, map[string]string) {
				_, st := follows(r, L)
				return st == "file", nil
			},
			do: func(t *testing.T, r *secRun, p, L string) error {
				rp, _ := follows(r, L)
				b, _ := os.ReadFile(r.e.userPath(r.user, rp))
				sum, err := r.c.hash(p)
				if err == nil && sum != secSum(string(b)) {
					t.Errorf("SECURITY? hash %q: %s, want %s (of %s in the user's root)", p, sum, secSum(string(b)), rp)
				}
				return err
			}},
		{name: "symlink-at", leaf: "ln",
			plan: func(r *secRun, p, L string) (bool, map[string]string) { return r.planSymlink("x", p) },
			do:   func(t *testing.T, r *secRun, p, L string) error { return r.c.symlink("x", p) }},
		{name: "symlink-to", leaf: "x",
			plan: func(r *secRun, p, L string) (bool, map[string]string) { return r.planSymlink(p, "/ln") },
			do:   func(t *testing.T, r *secRun, p, L string) error { return r.c.symlink(p, "/ln") }},
	}
}

// matrix runs every operation on every path paths gives for its leaf.
func (r *secRun) matrix(t *testing.T, setup func(t *testing.T), paths func(leaf string) []string) {
	t.Helper()
	for _, op := range secOps() {
		for _, p := range paths(op.leaf) {
			if op.skip != nil && op.skip(p) {
				continue
			}
			L := r.land(p)
			r.attack(t, op.name+" "+p, setup,
				func() (bool, map[string]string) { return op.plan(r, p, L) },
				func(t *testing.T) error { return op.do(t, r, p, L) })
		}
	}
}

// secDotDot spells ".." every way a client might, ending in leaf.
func secDotDot(leaf string) []string {
	return []string{
		"../" + leaf, "../../" + leaf, "a/../../" + leaf, "/../" + leaf, "./../" + leaf,
		"..%2f" + leaf, "..%2F" + leaf, "%2e%2e/" + leaf, "..\\" + leaf, "..\\..\\" + leaf,
		"....//" + leaf, ".../" + leaf, "/..", "..", "/../..", "../",
		"a/b/../../../../" + leaf, strings.Repeat("../", 64) + leaf, "/./../a/./../../" + leaf,
		"../../outside/" + leaf, "../../outside/secret", "../../../outside/sub",
	}
}

// TestSecurityDotDot: ".." in every spelling, for every command, over FTP
// (from "/" and from "/a/b") and SFTP. The servers resolve ".." lexically
// inside the user's tree; where each path lands is asserted.
func TestSecurityDotDot(t *testing.T) {
	e := secStart(t)
	for _, r := range e.runs(t, "alice", true) {
		t.Run(r.name, func(t *testing.T) { r.matrix(t, nil, secDotDot) })
	}
}

// secHostState records files of the host the attacks name, to check that
// they stay as they are. A regular file is its mode and content, less the
// lines of internal/refserver's throwaway users ("upgref..."), which the
// differential and sshfs tests of packages that go test runs beside this
// one add to /etc/passwd and remove (its size and mtime move with them).
func secHostState(paths []string) map[string]string {
	out := make(map[string]string)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			out[p] = "absent"
			continue
		}
		if !fi.Mode().IsRegular() {
			out[p] = fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime())
			continue
		}
		s := fi.Mode().String()
		if b, err := os.ReadFile(p); err == nil {
			var kept []string
			for _, line := range strings.SplitAfter(string(b), "\n") {
				if !strings.HasPrefix(line, "upgref") {
					kept = append(kept, line)
				}
			}
			s += " " + secSum(strings.Join(kept, ""))
		}
		out[p] = s
	}
	return out
}

// TestSecurityAbsolutePaths: absolute paths name the user's tree, never
// the host's: "/etc/passwd" is <root>/alice/etc/passwd. With and without
// an etc directory of alice's own, every command lands inside her root,
// and the host's /etc is untouched.
func TestSecurityAbsolutePaths(t *testing.T) {
	e := secStart(t)
	var host []string
	for _, leaf := range []string{"passwd", "newfile", "newdir", "x", "moved", "renamed", "ln", "a", "emptydir"} {
		host = append(host, "/etc/"+leaf)
	}
	hostBefore := secHostState(host)
	abs := func(leaf string) []string {
		return []string{"/etc/passwd", "/etc/" + leaf, "/etc", "//etc//passwd", "/proc/self/environ", "/root/.ssh/authorized_keys", "/tmp/" + leaf}
	}
	ownEtc := func(t *testing.T) {
		secWrite(t, e.userPath("alice", "/etc/passwd"), "alice's own etc/passwd")
	}
	for _, r := range e.runs(t, "alice", false) {
		t.Run(r.name+"/no-etc", func(t *testing.T) { r.matrix(t, nil, abs) })
		t.Run(r.name+"/own-etc", func(t *testing.T) { r.matrix(t, ownEtc, abs) })
	}
	for p, after := range secHostState(host) {
		if after != hostBefore[p] {
			t.Errorf("SECURITY: host file %s changed: %s -> %s", p, hostBefore[p], after)
		}
	}
}

// TestSecuritySymlinks: links made through the gateway cannot point out
// of the user's root, and links planted in the root that do (as a
// container might hold) are never followed: every read, write, listing
// and attribute change through them is refused, and outside stays as it
// was.
func TestSecuritySymlinks(t *testing.T) {
	e := secStart(t)
	for _, r := range e.runs(t, "alice", false) {
		t.Run(r.name+"/create", func(t *testing.T) {
			for _, tc := range []struct{ target, link string }{
				{"../../outside/secret", "/l1"},
				{"/etc/passwd", "/l2"},
				{"../../../../../../etc", "/l3"},
				{"/../../outside/secret", "/l4"},
				{"..", "/l5"},
				{"../../outside", "/a/l6"},
				{"../..", "/a/b/l7"},
				{"../../../x", "/a/b/l8"},
				{"../x", "/a/l9"},
				{e.outside, "/l10"},
			} {
				r.attack(t, "symlink "+tc.target+" "+tc.link, nil,
					func() (bool, map[string]string) { return r.planSymlink(tc.target, tc.link) },
					func(t *testing.T) error { return r.c.symlink(tc.target, tc.link) })
			}
		})
		// Links as the gateway stores them: dangling inside the root
		// until the user creates what they name.
		gatewayLinks := func(t *testing.T) {
			secSymlink(t, "etc/passwd", e.userPath("alice", "/l2"))
			secSymlink(t, "outside/secret", e.userPath("alice", "/l4"))
			secSymlink(t, "outside", e.userPath("alice", "/l6"))
		}
		through := func(leaf string) []string {
			return []string{"/l2", "/l4", "/l6", "/l6/secret", "/l6/sub", "/l6/" + leaf}
		}
		t.Run(r.name+"/through-dangling", func(t *testing.T) { r.matrix(t, gatewayLinks, through) })
		t.Run(r.name+"/through-inside", func(t *testing.T) {
			r.matrix(t, func(t *testing.T) {
				gatewayLinks(t)
				secWrite(t, e.userPath("alice", "/etc/passwd"), "alice's own etc/passwd")
				secWrite(t, e.userPath("alice", "/outside/secret"), "alice's own outside/secret")
				secWrite(t, e.userPath("alice", "/outside/sub/f"), "alice's own outside/sub/f")
			}, through)
		})
		// Links planted on disk that lead out of the agent root.
		planted := func(t *testing.T) {
			secSymlink(t, e.outside, e.userPath("alice", "/evil"))
			secSymlink(t, "../../outside", e.userPath("alice", "/evilrel"))
			secSymlink(t, filepath.Join(e.outside, "secret"), e.userPath("alice", "/evilfile"))
			secSymlink(t, "../../outside/secret", e.userPath("alice", "/evilfilerel"))
			secSymlink(t, "/etc", e.userPath("alice", "/etclink"))
			secSymlink(t, "../evil", e.userPath("alice", "/a/chain"))
		}
		escaping := func(leaf string) []string {
			var out []string
			for _, n := range []string{"/evil", "/evilrel", "/etclink", "/a/chain"} {
				out = append(out, n, n+"/secret", n+"/sub", n+"/sub/f", n+"/"+leaf, n+"/passwd")
			}
			return append(out, "/evilfile", "/evilfilerel")
		}
		t.Run(r.name+"/planted", func(t *testing.T) { r.matrix(t, planted, escaping) })
	}
}

// TestSecurityOtherUser: alice reaches for bob's files (same agent, root
// next to hers) by every path: lexical ones land in her own tree, links
// to his directory (planted, or made inside her tree and then moved up so
// that they climb out) are refused, and bob's files never change or leak.
func TestSecurityOtherUser(t *testing.T) {
	e := secStart(t)
	paths := func(leaf string) []string {
		return []string{
			"../bob/" + leaf, "/../bob/" + leaf, "/bob/" + leaf, "bob/" + leaf, "../../agent/bob/" + leaf,
			"/../../agent/bob/" + leaf, "..\\bob\\" + leaf, "/bob", "../bob", "../bob/secret",
			"/tobob/" + leaf, "/tobob", "/tobob/secret", "/tobobabs/" + leaf, "/tobobabs", "/bobx", "/a/tobob/secret",
		}
	}
	planted := func(t *testing.T) {
		secSymlink(t, "../bob", e.userPath("alice", "/tobob"))
		secSymlink(t, filepath.Join(e.root, "bob"), e.userPath("alice", "/tobobabs"))
		secSymlink(t, "../bob/x", e.userPath("alice", "/bobx"))
		secSymlink(t, "../../bob", e.userPath("alice", "/a/tobob"))
	}
	ownBob := func(t *testing.T) {
		planted(t)
		secWrite(t, e.userPath("alice", "/bob/x"), "alice's own bob/x")
		secWrite(t, e.userPath("alice", "/bob/secret"), "alice's own bob/secret")
	}
	for _, r := range e.runs(t, "alice", false) {
		t.Run(r.name+"/no-bob", func(t *testing.T) { r.matrix(t, planted, paths) })
		t.Run(r.name+"/own-bob", func(t *testing.T) { r.matrix(t, ownBob, paths) })
		t.Run(r.name+"/moved-link", func(t *testing.T) { secMovedLinks(t, r) })
	}
}

// secMovedLinks makes links that stay inside the user's tree where they
// are made, then moves them (or their directory) up so that their
// relative targets climb out of it, into bob's root: following them must
// be refused wherever they end up.
func secMovedLinks(t *testing.T, r *secRun) {
	e := r.e
	bobBefore := e.snap(t)
	step := func(t *testing.T, what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	refused := func(t *testing.T, what string, fn func() error) {
		t.Helper()
		var err error
		secWithin(t, what, func() { err = fn() })
		if err == nil {
			t.Errorf("SECURITY: %s through a link into bob's root succeeded", what)
			return
		}
		t.Logf("%s refused: %v", what, err)
		r.c.clear(t, what, err)
	}
	for _, tc := range []struct {
		name       string
		dirs       []string // made on disk first
		target     string   // for the symlink command
		link       string
		from, to   string // then renamed
		moved      string // the link's path after the rename
		ownTargets []string
	}{
		// The link's own target: "/bob/secret" in alice's tree (FTP makes
		// targets absolute; stored as "../bob/secret").
		{name: "link", dirs: []string{"/d"}, target: "../bob/secret", link: "/d/ln", from: "/d/ln", to: "/ln", moved: "/ln",
			ownTargets: []string{"/bob/secret"}},
		{name: "dir", dirs: []string{"/d1/d2"}, target: "../../bob", link: "/d1/d2/ln", from: "/d1/d2", to: "/d2", moved: "/d2/ln",
			ownTargets: []string{"/bob/secret", "/bob/x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.reset(t, r.user)
			for _, d := range tc.dirs {
				if err := os.MkdirAll(e.userPath(r.user, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// FTP's RNFR stats the source, so the link must lead somewhere
			// in alice's tree first.
			for _, p := range tc.ownTargets {
				secWrite(t, e.userPath(r.user, p), "alice's own "+p)
			}
			target := tc.target
			if r.ftp {
				target = path.Join(path.Dir(tc.link), tc.target)
			}
			var err error
			secWithin(t, "symlink", func() { err = r.c.symlink(target, tc.link) })
			step(t, "symlink "+target+" "+tc.link, err)
			secWithin(t, "rename", func() { err = r.c.rename(tc.from, tc.to) })
			if err != nil {
				// Refusing the move is a defence too.
				r.c.clear(t, "rename", err)
				return
			}
			refused(t, "get", func() error {
				p := tc.moved
				if tc.name == "dir" {
					p += "/secret"
				}
				b, err := r.c.get(p)
				secLeak(t, "get "+p, b)
				return err
			})
			refused(t, "put", func() error {
				p := tc.moved
				if tc.name == "dir" {
					p += "/x"
				}
				return r.c.put(p, []byte(secPayload))
			})
			refused(t, "put new", func() error { return r.c.put(tc.moved+"/new", []byte(secPayload)) })
			refused(t, "chmod", func() error { return r.c.chmod(tc.moved, 0o777) })
			refused(t, "chtimes", func() error { return r.c.chtimes(tc.moved, secT0) })
			refused(t, "stat", func() error { _, _, err := r.c.stat(tc.moved); return err })
			if tc.name == "dir" {
				refused(t, "list", func() error {
					names, err := r.c.list(tc.moved)
					if err == nil {
						t.Errorf("SECURITY: listed bob's root: %q", names)
					}
					return err
				})
				refused(t, "remove", func() error { return r.c.remove(tc.moved + "/x") })
				refused(t, "mkdir", func() error { return r.c.mkdir(tc.moved + "/newdir") })
				refused(t, "rename out", func() error { return r.c.rename(tc.moved+"/secret", "/stolen") })
			}
			var err2 error
			secWithin(t, "alive", func() { err2 = r.c.alive() })
			if err2 != nil {
				t.Errorf("session broken: %v", err2)
			}
			e.waitNoTemp()
			after := e.snap(t)
			for p, what := range secChanges(bobBefore, after, "agent/"+r.user) {
				if _, in := secRel("agent/"+r.user, p); !in {
					t.Errorf("SECURITY: %s changed outside alice's root: %s", p, what)
				}
			}
		})
	}
}

// TestSecurityBadNames: NUL and control bytes in names, and names and
// paths too long for the file system, are refused with a clear reply;
// nothing is created.
func TestSecurityBadNames(t *testing.T) {
	e := secStart(t)
	long := strings.Repeat("n", 300)
	for _, r := range e.runs(t, "alice", false) {
		t.Run(r.name, func(t *testing.T) {
			bad := []string{"a\x01b", "x\x1by", "a\x7fb", "a\x00b", "\x00", "a\rb", "/" + long, long + "/f", "/a/" + long}
			if r.ftp {
				// 4000 bytes: within ftpserverlib's 4096-byte command line.
				bad = append(bad, "/"+strings.Repeat("d/", 2000)+"f")
			} else {
				bad = append(bad, "a\nb", "\n", "/"+strings.Repeat("d/", 2500)+"f", "/a/b/"+strings.Repeat("x", 5000))
			}
			refuse := func() (bool, map[string]string) { return false, nil }
			for _, n := range bad {
				r.attack(t, "put "+n, nil, refuse, func(t *testing.T) error { return r.c.put(n, []byte(secPayload)) })
				r.attack(t, "mkdir "+n, nil, refuse, func(t *testing.T) error { return r.c.mkdir(n) })
				r.attack(t, "rename /x "+n, nil, refuse, func(t *testing.T) error { return r.c.rename("/x", n) })
				if !strings.ContainsAny(n, " ") {
					r.attack(t, "symlink x "+n, nil, refuse, func(t *testing.T) error { return r.c.symlink("x", n) })
				}
			}
			// The limits are the file system's: 255 bytes is a fine name.
			ok := strings.Repeat("n", 255)
			r.attack(t, "put 255-byte name", nil,
				func() (bool, map[string]string) { return true, map[string]string{ok: "file:" + secPayload} },
				func(t *testing.T) error { return r.c.put("/"+ok, []byte(secPayload)) })
		})
	}

	// A command line longer than ftpserverlib reads (4096 bytes) cannot
	// be answered: the server closes that connection. Nothing is written
	// and the server goes on serving.
	t.Run("ftp-line-too-long", func(t *testing.T) {
		raw := secDialRaw(t, e.srv.FTPAddr.String(), "alice")
		e.reset(t, "alice")
		before := e.snap(t)
		var code int
		var msg string
		var err error
		secWithin(t, "over-long STOR", func() { code, msg, err = raw.cmd("STOR /" + strings.Repeat("d/", 2500) + "f") })
		t.Logf("over-long command line: %d %q %v", code, msg, err)
		if err == nil && (code < 500 || code > 599) {
			t.Errorf("over-long command line: reply %d %q, want a 5xx or a closed connection", code, msg)
		}
		e.expect(t, before, "alice", nil)
		f := secDialFTP(t, e, "alice", "/")
		secWithin(t, "a new session", func() {
			if err := f.alive(); err != nil {
				t.Errorf("server no longer serves after an over-long line: %v", err)
			}
		})
	})
}

// TestSecurityAgentToken: a user whose agent refuses the gateway's token
// cannot log in on either protocol and is told why; nothing is written in
// that agent's directory; a missing or empty token file stops the start.
func TestSecurityAgentToken(t *testing.T) {
	a := agenttest.Start(t, "")
	secWrite(t, filepath.Join(a.Dir, "keep"), "the agent's own file")
	e := secNewEnv(t)
	tokens := t.TempDir()
	wrong := filepath.Join(tokens, "wrong")
	secWrite(t, wrong, "not-"+a.Token+"\n")
	cfg := e.config(t)
	cfg.Agents["remote"] = config.Agent{Address: a.Addr, TokenFile: wrong}
	cfg.Users = append(cfg.Users, config.User{Name: "carol", PasswordHash: e.hash, Mounts: []config.Mount{{Path: "/", Agent: "remote", Root: "carol"}}})
	e.start(t, cfg)
	agentBefore := (&secEnv{base: a.Dir}).snap(t)
	outsideBefore := e.snap(t)

	t.Run("ftp", func(t *testing.T) {
		c, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithDialFunc(secDial))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		var lerr error
		secWithin(t, "FTP login", func() { lerr = c.Login("carol", "pw") })
		t.Logf("FTP login: %v", lerr)
		var te *textproto.Error
		switch {
		case lerr == nil:
			t.Fatal("carol logged in through an agent that refuses the gateway's token")
		case !errors.As(lerr, &te) || te.Code != 530:
			t.Errorf("login: %v, want a 530 reply", lerr)
		case !strings.Contains(te.Msg, "token") || !strings.Contains(te.Msg, "remote"):
			t.Errorf("530 %q does not say that agent remote refused the token", te.Msg)
		}
	})
	t.Run("sftp", func(t *testing.T) {
		var banners []string
		var err error
		secWithin(t, "SSH login", func() {
			var sc *ssh.Client
			sc, err = ssh.Dial("tcp", e.srv.SFTPAddr.String(), &ssh.ClientConfig{User: "carol", Auth: []ssh.AuthMethod{ssh.Password("pw")},
				HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
				BannerCallback: func(m string) error { banners = append(banners, m); return nil }})
			if sc != nil {
				sc.Close()
			}
		})
		if err == nil {
			t.Fatal("carol logged in over SSH through an agent that refuses the gateway's token")
		}
		t.Logf("SSH login: %v; banner %q", err, banners)
		if b := strings.Join(banners, ""); !strings.Contains(b, "token") || !strings.Contains(b, "remote") {
			t.Errorf("SSH banner %q does not say that agent remote refused the token (err %v)", b, err)
		}
	})
	// Other users are not affected.
	f := secDialFTP(t, e, "alice", "/")
	if err := f.put("/ok", []byte("fine")); err != nil {
		t.Errorf("alice: %v", err)
	}
	for p, what := range secChanges(agentBefore, (&secEnv{base: a.Dir}).snap(t), "") {
		t.Errorf("SECURITY: %s changed in the agent that refused the token: %s", p, what)
	}
	for p, what := range secChanges(outsideBefore, e.snap(t), "agent/alice") {
		if rel, _ := secRel("agent/alice", p); rel != "ok" && rel != "." {
			t.Errorf("%s changed: %s", p, what)
		}
	}

	// A token file that is missing or empty stops the gateway at start,
	// naming the key.
	for name, file := range map[string]string{"missing": filepath.Join(tokens, "none"), "empty": filepath.Join(tokens, "empty")} {
		t.Run(name, func(t *testing.T) {
			secWrite(t, filepath.Join(tokens, "empty"), " \n")
			cfg := e.config(t)
			cfg.Agents["remote"] = config.Agent{Address: a.Addr, TokenFile: file}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			srv, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				srv.Shutdown(context.Background())
				t.Fatalf("started with a %s token file", name)
			}
			if !strings.Contains(err.Error(), "agents.remote.token_file") {
				t.Errorf("error %q does not name agents.remote.token_file", err)
			}
		})
	}
}
