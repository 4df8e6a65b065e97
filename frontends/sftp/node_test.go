package sftp_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/nodetest"
)

// The Node tests replay the VS Code "SFTP" extension (liximomo, now
// Natizyskunk) with the library it is built on, npm ssh2, through
// interop/node/vscode-sftp.js. CI installs the packages with
// `(cd interop/node && npm ci --ignore-scripts)`; locally the tests skip
// without node or interop/node/node_modules, unless
// UPGATE_REQUIRE_INTEROP=1.

// vscodeSFTPReport is what vscode-sftp.js prints.
type vscodeSFTPReport struct {
	OK         bool `json:"ok"`
	Negotiated struct {
		Kex           string `json:"kex"`
		ServerHostKey string `json:"serverHostKey"`
		CS            struct {
			Cipher string `json:"cipher"`
			MAC    string `json:"mac"`
		} `json:"cs"`
	} `json:"negotiated"`
	Extensions        map[string]string `json:"extensions"`
	Realpath          string            `json:"realpath"`
	IsOpenSSH         bool              `json:"isOpenSSH"`
	Readlink          string            `json:"readlink"`
	EnsureDir         []nodeStep        `json:"ensureDir"`
	EnsureDirExisting []nodeStep        `json:"ensureDirExisting"`
	Uploads           []struct {
		Round          string     `json:"round"`
		Target         string     `json:"target"`
		Steps          []nodeStep `json:"steps"`
		Err            *nodeErr   `json:"err"`
		ModeFromTarget *uint32    `json:"modeFromTarget"`
	} `json:"uploads"`
	Readdir []struct {
		Filename string `json:"filename"`
		Longname string `json:"longname"`
		nodeAttrs
	} `json:"readdir"`
	Stat      map[string]nodeAttrs `json:"stat"`
	Keepalive struct {
		Interval int `json:"interval"`
		Pings    int `json:"pings"`
		Replies  int `json:"replies"`
	} `json:"keepalive"`
	AfterIdle string   `json:"afterIdle"`
	Errors    []string `json:"errors"`
}

type nodeStep struct {
	Op   string   `json:"op"`
	Args []any    `json:"args"`
	Err  *nodeErr `json:"err"`
	Ms   int64    `json:"ms"` // since the script started
}

type nodeErr struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
}

func (e *nodeErr) String() string {
	if e == nil {
		return "ok"
	}
	return fmt.Sprintf("code %v: %s", e.Code, e.Message)
}

type nodeAttrs struct {
	Size  int64  `json:"size"`
	Mode  uint32 `json:"mode"`
	Mtime int64  `json:"mtime"`
}

// The key exchanges the extension documents as its default: no
// curve25519, so the gateway must offer these.
var vscodeKex = []string{"ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group-exchange-sha256"}

// TestNodeVSCodeSFTPKex connects with each documented key exchange alone.
func TestNodeVSCodeSFTPKex(t *testing.T) {
	node, script := nodetest.Script(t, "vscode-sftp.js")
	e := start(t, nil)
	for _, kex := range vscodeKex {
		t.Run(kex, func(t *testing.T) {
			var rep vscodeSFTPReport
			nodetest.Run(t, node, script, []string{"VSCODE_SFTP_MODE=handshake", "VSCODE_SFTP_KEX=" + kex}, &rep,
				e.Addr, "alice", gwtest.Users["alice"], t.TempDir())
			if !rep.OK || rep.Negotiated.Kex != kex {
				t.Fatalf("negotiated %q, want %q (errors %q)", rep.Negotiated.Kex, kex, rep.Errors)
			}
			if rep.Realpath != "/" {
				t.Errorf("REALPATH . = %q, want /", rep.Realpath)
			}
		})
	}
}

// TestNodeSymlink: node's ssh2 sends SSH_FXP_SYMLINK's paths in OpenSSH's
// order (target, link) only to a server whose name says OpenSSH, and in
// the drafts' order to any other; upgate reads OpenSSH's order, so it
// names itself so (serverVersion). Under its own old name the link was
// made at "target.txt", pointing at "link".
func TestNodeSymlink(t *testing.T) {
	node, script := nodetest.Script(t, "vscode-sftp.js")
	e := start(t, nil)
	var rep vscodeSFTPReport
	nodetest.Run(t, node, script, []string{"VSCODE_SFTP_MODE=symlink"}, &rep, e.Addr, "alice", gwtest.Users["alice"], t.TempDir())
	if !rep.OK || !rep.IsOpenSSH || rep.Readlink != "target.txt" {
		t.Fatalf("ok %v, ssh2 takes the server for OpenSSH: %v, readlink /link = %q (steps %v, errors %q)", rep.OK, rep.IsOpenSSH, rep.Readlink, rep.EnsureDir, rep.Errors)
	}
	home := e.UserDir("alice")
	if target, err := os.Readlink(filepath.Join(home, "link")); err != nil || target != "target.txt" {
		t.Errorf("on disk: link -> %q, %v; want target.txt", target, err)
	}
	if _, err := os.Lstat(filepath.Join(home, "target.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("target.txt exists (%v): the link was made the wrong way round", err)
	}
}

// TestNodeVSCodeSFTP replays the extension's uploads: ensureDir with
// recursion, four rounds of uploads (temp file with REMOVE+RENAME onto a
// missing and an existing target, posix-rename with the mode read back
// through FSTAT, and straight into the target), four at a time, each with
// FCHMOD, write stream, FSETSTAT times and the rename before CLOSE; then
// keepalives while idle, READDIR, STAT and ensureDir of an existing
// directory. It checks every file on disk.
func TestNodeVSCodeSFTP(t *testing.T) {
	node, script := nodetest.Script(t, "vscode-sftp.js")
	e := start(t, nil)

	type version struct {
		data  []byte
		mtime time.Time
	}
	local := t.TempDir()
	base := time.Date(2024, 3, 5, 10, 20, 30, 0, time.UTC)
	final := make(map[string]version)
	rounds := []struct {
		dir   string
		files map[string]int // name -> size
	}{
		{"1", map[string]int{"index.php": 3000, ".htaccess": 120, "big.bin": 1<<20 + 123, "empty.txt": 0, "über café.txt": 77}},
		{"2", map[string]int{"index.php": 3100, "big.bin": 300_001}},
		{"3", map[string]int{"index.php": 2900, ".htaccess": 130}},
		{"4", map[string]int{"readme.md": 500, "empty.txt": 10}},
	}
	seq := 0
	for ri, r := range rounds {
		for name, size := range r.files {
			seq++
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + seq*13 + ri)
			}
			mt := base.Add(time.Duration(ri)*time.Hour + time.Duration(seq)*time.Second)
			p := filepath.Join(local, r.dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
			final[name] = version{data, mt}
		}
	}

	var rep vscodeSFTPReport
	nodetest.Run(t, node, script, []string{"VSCODE_SFTP_KEEPALIVE_MS=200", "VSCODE_SFTP_IDLE_MS=1000"}, &rep,
		e.Addr, "alice", gwtest.Users["alice"], local)
	if !rep.OK {
		t.Fatalf("script failed: %q", rep.Errors)
	}

	// Transport: the extension's first key exchange, never curve25519.
	if rep.Negotiated.Kex != vscodeKex[0] {
		t.Errorf("negotiated kex %q, want %q", rep.Negotiated.Kex, vscodeKex[0])
	}
	t.Logf("negotiated kex %s, host key %s, cipher %s, mac %s", rep.Negotiated.Kex, rep.Negotiated.ServerHostKey, rep.Negotiated.CS.Cipher, rep.Negotiated.CS.MAC)
	if rep.Extensions["posix-rename@openssh.com"] != "1" {
		t.Errorf("posix-rename@openssh.com not advertised: %v", rep.Extensions)
	}

	// Keepalives every 200 ms over a 1 s idle period, all answered.
	if rep.Keepalive.Pings < 3 || rep.Keepalive.Replies < rep.Keepalive.Pings-1 {
		t.Errorf("keepalive: %d pings, %d replies", rep.Keepalive.Pings, rep.Keepalive.Replies)
	}
	if rep.AfterIdle == "" {
		t.Error("session unusable after the idle period")
	}

	// ensureDir /vscode/a/b/c with nothing there: NO_SUCH_FILE up to
	// /vscode, then back down.
	var got []string
	for _, s := range rep.EnsureDir {
		got = append(got, fmt.Sprintf("%s %v: %v", s.Op, s.Args[0], codeOf(s.Err)))
	}
	want := []string{
		"mkdir /vscode/a/b/c: 2", "mkdir /vscode/a/b: 2", "mkdir /vscode/a: 2", "mkdir /vscode: ok",
		"mkdir /vscode/a: ok", "mkdir /vscode/a/b: ok", "mkdir /vscode/a/b/c: ok",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ensureDir:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// ensureDir of an existing directory: MKDIR fails (not NO_SUCH_FILE, which
	// would make the extension recurse), LSTAT says directory.
	if n := len(rep.EnsureDirExisting); n != 2 || rep.EnsureDirExisting[0].Err == nil || codeOf(rep.EnsureDirExisting[0].Err) == "2" ||
		rep.EnsureDirExisting[1].Op != "lstat" || rep.EnsureDirExisting[1].Err != nil {
		t.Errorf("ensureDir of an existing directory: %+v", rep.EnsureDirExisting)
	}

	// Every upload went through; the only failing step allowed is the
	// REMOVE of a target that is not there yet.
	if len(rep.Uploads) != 11 {
		t.Errorf("%d uploads, want 11", len(rep.Uploads))
	}
	for _, u := range rep.Uploads {
		var steps []string
		for _, s := range u.Steps {
			steps = append(steps, fmt.Sprintf("%5d ms %s %v: %v", s.Ms, s.Op, s.Args, s.Err))
			if s.Err != nil && s.Op != "unlink" {
				t.Errorf("round %s %s: %s failed: %v", u.Round, u.Target, s.Op, s.Err)
			}
		}
		if u.Err != nil {
			t.Errorf("round %s %s failed: %v\n%s", u.Round, u.Target, u.Err, strings.Join(steps, "\n"))
		} else if testing.Verbose() {
			t.Logf("round %s %s:\n%s", u.Round, u.Target, strings.Join(steps, "\n"))
		}
		if u.Round == "3" && (u.ModeFromTarget == nil || *u.ModeFromTarget != 0o640) {
			t.Errorf("round 3 %s: mode read through FSTAT = %v, want 0640", u.Target, u.ModeFromTarget)
		}
	}

	// On disk: final content, mtime to the second, mode 0640, no .new and
	// no upload temp files.
	dir := filepath.Join(e.UserDir("alice"), "vscode", "a", "b", "c")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	var wantNames []string
	for name := range final {
		wantNames = append(wantNames, name)
	}
	sort.Strings(wantNames)
	if strings.Join(names, "|") != strings.Join(wantNames, "|") {
		t.Errorf("directory holds %q, want %q", names, wantNames)
	}
	for name, v := range final {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if nodetest.Sum(b) != nodetest.Sum(v.data) {
			t.Errorf("%s: %d bytes, sha256 %s; want %d bytes, %s", name, len(b), nodetest.Sum(b)[:12], len(v.data), nodetest.Sum(v.data)[:12])
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Truncate(time.Second).Equal(v.mtime) {
			t.Errorf("%s: mtime %s, want %s", name, fi.ModTime().UTC(), v.mtime)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", name, fi.Mode().Perm())
		}
	}

	// READDIR and STAT as the extension sees them.
	var listed []string
	for _, le := range rep.Readdir {
		listed = append(listed, le.Filename)
		v, ok := final[le.Filename]
		if !ok {
			continue
		}
		if le.Size != int64(len(v.data)) || fs.FileMode(le.Mode).Perm() != 0o640 || le.Mtime != v.mtime.Unix() {
			t.Errorf("READDIR %s: size %d mode %o mtime %d; want %d, 0640, %d", le.Filename, le.Size, le.Mode&0o777, le.Mtime, len(v.data), v.mtime.Unix())
		}
		st, ok := rep.Stat[path.Join("/vscode/a/b/c", le.Filename)]
		if !ok || st != le.nodeAttrs {
			t.Errorf("STAT %s = %+v, READDIR said %+v", le.Filename, st, le.nodeAttrs)
		}
	}
	if strings.Join(listed, "|") != strings.Join(wantNames, "|") {
		t.Errorf("READDIR lists %q, want %q", listed, wantNames)
	}
	e.AgentIdle(t)
}

func codeOf(e *nodeErr) string {
	if e == nil {
		return "ok"
	}
	return fmt.Sprint(e.Code)
}

// TestRenameWhileOpen is the extension's useTempFile order without node:
// the upload handle of target.new is still open when the client renames
// it onto target (REMOVE + RENAME, or posix-rename), and is closed after.
// An upload gets its name only when it commits at the close, so the
// rename has to wait for it.
func TestRenameWhileOpen(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	mtime := time.Date(2023, 7, 1, 12, 0, 5, 0, time.UTC)
	for i, posix := range []bool{false, false, true} {
		data := []byte(fmt.Sprintf("version %d of the file", i))
		f, err := c.Create("/target.php.new")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Chmod(0o640); err != nil {
			t.Fatal(err)
		}
		if err := c.Chtimes("/target.php.new", mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if posix {
			err = c.PosixRename("/target.php.new", "/target.php")
		} else {
			if err := c.Remove("/target.php"); err != nil && i > 0 {
				t.Fatalf("remove: %v", err)
			}
			err = c.Rename("/target.php.new", "/target.php")
		}
		if err != nil {
			t.Fatalf("rename %d (posix %v) while open: %v", i, posix, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close after rename: %v", err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "target.php"))
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("round %d: target.php = %q, %v; want %q", i, b, err, data)
		}
		fi, err := os.Stat(filepath.Join(dir, "target.php"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
			t.Errorf("round %d: mode %v mtime %v; want 0640, %v", i, fi.Mode().Perm(), fi.ModTime().UTC(), mtime)
		}
		if _, err := os.Stat(filepath.Join(dir, "target.php.new")); !os.IsNotExist(err) {
			t.Errorf("round %d: target.php.new left behind: %v", i, err)
		}
	}
	e.AgentIdle(t)
}
