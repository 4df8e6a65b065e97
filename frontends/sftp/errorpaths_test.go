package sftp_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// The SFTP v3 packets and codes these tests send and check, beyond
// protocol_test.go's.
const (
	fxpRead     = 5
	fxpSetstat  = 9
	fxpOpendir  = 11
	fxpReaddir  = 12
	fxpMkdir    = 14
	fxpStat     = 17
	fxpRename   = 18
	fxpExtended = 200
	fxpData     = 103
	fxpName     = 104
	fxpAttrs    = 105

	fxOK               = 0
	fxPermissionDenied = 3
	fxFailure          = 4
)

// startMem runs a gateway with SFTP whose users' trees are in-memory
// filesystems (each user has one; alice's is returned), reached through
// the real login, session view and accounting: faults injected into it
// are what the disk behind an agent would answer.
func startMem(t testing.TB) (*env, *memfs.FS) {
	t.Helper()
	clk := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	trees := map[string]*memfs.FS{}
	for user := range gwtest.Users {
		trees[user] = memfs.New(memfs.Options{Now: func() time.Time { return clk }})
	}
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		root := cfg.Agents[gwtest.Agent].Root
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(root, "..", filepath.Base(root)+"-hostkey-ed25519")}
	}, func(user string) afero.Fs { return trees[user] })
	return &env{Env: e, Addr: e.Srv.SFTPAddr.String()}, trees["alice"]
}

// agentDown is what the gRPC filesystem answers when the agent cannot be
// reached: a text naming the agent and the user, wrapping
// backend.ErrUnavailable.
type agentDown struct{}

func (agentDown) Error() string { return "agent web for user alice unreachable: connection refused" }
func (agentDown) Unwrap() error { return backend.ErrUnavailable }

// reply is an SFTP reply: its type, and a STATUS's code and message.
type reply struct {
	typ  byte
	code uint32
	msg  string
}

func (r reply) String() string {
	if r.typ != fxpStatus {
		return fmt.Sprintf("reply type %d", r.typ)
	}
	return fmt.Sprintf("status %d %q", r.code, r.msg)
}

// req sends one request and returns its reply.
func (p *rawSFTP) req(typ byte, body []byte) reply {
	p.t.Helper()
	rtyp, data := p.call(typ, body)
	if rtyp != fxpStatus {
		return reply{typ: rtyp}
	}
	code, msg := p.status(rtyp, data)
	return reply{typ: rtyp, code: code, msg: msg}
}

// openBody is an OPEN request's body: name, pflags, no attributes.
func openBody(name string, pflags uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(sshString(nil, name), pflags), 0)
}

// openHandle opens name or fails the test.
func (p *rawSFTP) openHandle(name string, pflags uint32) string {
	p.t.Helper()
	return p.open(name, pflags, 0)
}

func (p *rawSFTP) writeReply(handle string, off uint64, b []byte) reply {
	p.t.Helper()
	body := binary.BigEndian.AppendUint64(sshString(nil, handle), off)
	return p.req(fxpWrite, sshString(body, string(b)))
}

func (p *rawSFTP) closeReply(handle string) reply {
	p.t.Helper()
	return p.req(fxpClose, sshString(nil, handle))
}

// upload writes data in 32 KiB pieces as sftp clients do and closes,
// returning the first failed reply (the close's, if every write passed);
// after a failed write it still closes, and the close must fail too.
func (p *rawSFTP) upload(name string, data []byte) reply {
	p.t.Helper()
	h := p.openHandle(name, fxfWrite|fxfCreat|fxfTrunc)
	for off := 0; off < len(data); off += 32 << 10 {
		if r := p.writeReply(h, uint64(off), data[off:min(off+32<<10, len(data))]); r.code != fxOK {
			if c := p.closeReply(h); c.code == fxOK {
				p.t.Errorf("CLOSE after a failed WRITE succeeded: the partial upload committed")
			}
			return r
		}
	}
	return p.closeReply(h)
}

// TestErrorPaths: what the filesystem answers reaches the client as the
// SFTP status OpenSSH's sftp-server would send (code and message), and a
// failed upload changes nothing a listing or a download could see: each
// case injects one fault into alice's in-memory tree, sends the requests
// a client sends, and compares the whole tree (modes, sizes, mtimes,
// sha256) before and after.
func TestErrorPaths(t *testing.T) {
	e, m := startMem(t)
	old := []byte("<?php echo 'old';\n")
	if err := m.Mkdir("/site", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, m, "/site/index.php", old)
	data := randomBytes(1 << 20)
	c := sshClient(t, e, "alice")

	cases := []struct {
		name  string
		fault memfs.Fault
		run   func(p *rawSFTP) reply
		code  uint32
		text  string // the status message must contain it
	}{
		{
			name:  "upload, the disk fills up mid-upload",
			fault: memfs.Fault{Op: memfs.OpWrite, Path: "/site/index.php", Nth: 3, Err: syscall.ENOSPC},
			run:   func(p *rawSFTP) reply { return p.upload("/site/index.php", data) },
			code:  fxFailure, text: "no space left on device",
		},
		{
			name:  "upload, the commit fails",
			fault: memfs.Fault{Op: memfs.OpClose, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(p *rawSFTP) reply { return p.upload("/site/index.php", data) },
			code:  fxFailure, text: "input/output error",
		},
		{
			name:  "upload of a new file, the commit fails",
			fault: memfs.Fault{Op: memfs.OpClose, Path: "/site/new.php", Err: syscall.EIO},
			run:   func(p *rawSFTP) reply { return p.upload("/site/new.php", data) },
			code:  fxFailure, text: "input/output error",
		},
		{
			name:  "open, the disk is full",
			fault: memfs.Fault{Op: memfs.OpOpen, Path: "/site/*", Err: syscall.EDQUOT},
			run: func(p *rawSFTP) reply {
				return p.req(fxpOpen, openBody("/site/index.php", fxfWrite|fxfCreat|fxfTrunc))
			},
			code: fxFailure, text: "disk quota exceeded",
		},
		{
			name:  "open, the agent is unreachable",
			fault: memfs.Fault{Op: memfs.OpOpen, Err: agentDown{}},
			run: func(p *rawSFTP) reply {
				return p.req(fxpOpen, openBody("/site/index.php", fxfRead))
			},
			code: fxFailure, text: "agent web for user alice unreachable",
		},
		{
			name:  "open, too many open files",
			fault: memfs.Fault{Op: memfs.OpOpen, Err: syscall.EMFILE},
			run: func(p *rawSFTP) reply {
				return p.req(fxpOpen, openBody("/site/index.php", fxfRead))
			},
			code: fxFailure, text: "too many open files",
		},
		{
			name:  "mkdir, permission denied",
			fault: memfs.Fault{Op: memfs.OpMkdir, Path: "/site/cache", Err: syscall.EACCES},
			run: func(p *rawSFTP) reply {
				return p.req(fxpMkdir, binary.BigEndian.AppendUint32(sshString(nil, "/site/cache"), 0))
			},
			code: fxPermissionDenied, text: "permission denied",
		},
		{
			name:  "readdir fails",
			fault: memfs.Fault{Op: memfs.OpReaddir, Path: "/site", Err: syscall.EIO},
			run: func(p *rawSFTP) reply {
				typ, data := p.call(fxpOpendir, sshString(nil, "/site"))
				if typ != fxpHandle {
					p.t.Fatalf("OPENDIR: reply type %d", typ)
				}
				h := string(data[4 : 4+binary.BigEndian.Uint32(data)])
				defer p.closeReply(h)
				return p.req(fxpReaddir, sshString(nil, h))
			},
			code: fxFailure, text: "input/output error",
		},
		{
			name:  "read fails",
			fault: memfs.Fault{Op: memfs.OpRead, Path: "/site/index.php", Err: syscall.EIO},
			run: func(p *rawSFTP) reply {
				h := p.openHandle("/site/index.php", fxfRead)
				defer p.closeReply(h)
				body := binary.BigEndian.AppendUint64(sshString(nil, h), 0)
				return p.req(fxpRead, binary.BigEndian.AppendUint32(body, 32<<10))
			},
			code: fxFailure, text: "input/output error",
		},
		{
			name:  "remove, permission denied",
			fault: memfs.Fault{Op: memfs.OpRemove, Path: "/site/index.php", Err: syscall.EACCES},
			run:   func(p *rawSFTP) reply { return p.req(fxpRemove, sshString(nil, "/site/index.php")) },
			code:  fxPermissionDenied, text: "permission denied",
		},
		{
			name:  "rename across devices",
			fault: memfs.Fault{Op: memfs.OpRename, Path: "/site/index.php", Err: syscall.EXDEV},
			run: func(p *rawSFTP) reply {
				return p.req(fxpRename, sshString(sshString(nil, "/site/index.php"), "/site/moved.php"))
			},
			code: fxFailure, text: "cross-device link",
		},
		{
			name:  "posix-rename across devices",
			fault: memfs.Fault{Op: memfs.OpRename, Path: "/site/index.php", Err: syscall.EXDEV},
			run: func(p *rawSFTP) reply {
				body := sshString(sshString(sshString(nil, "posix-rename@openssh.com"), "/site/index.php"), "/site/moved.php")
				return p.req(fxpExtended, body)
			},
			code: fxFailure, text: "cross-device link",
		},
		{
			name:  "setstat times refused",
			fault: memfs.Fault{Op: memfs.OpChtimes, Path: "/site/index.php", Err: syscall.EPERM},
			run: func(p *rawSFTP) reply {
				body := binary.BigEndian.AppendUint32(sshString(nil, "/site/index.php"), attrACModTime)
				body = binary.BigEndian.AppendUint32(body, 1_600_000_000)
				return p.req(fxpSetstat, binary.BigEndian.AppendUint32(body, 1_600_000_000))
			},
			code: fxPermissionDenied, text: "permission denied",
		},
		{
			name:  "stat fails",
			fault: memfs.Fault{Op: memfs.OpStat, Path: "/site/index.php", Err: syscall.EIO},
			run:   func(p *rawSFTP) reply { return p.req(fxpStat, sshString(nil, "/site/index.php")) },
			code:  fxFailure, text: "input/output error",
		},
		{
			name:  "statvfs fails",
			fault: memfs.Fault{Op: memfs.OpStatFS, Err: syscall.EIO},
			run: func(p *rawSFTP) reply {
				return p.req(fxpExtended, sshString(sshString(nil, "statvfs@openssh.com"), "/site"))
			},
			code: fxFailure, text: "input/output error",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := fstest.Tree(t, m)
			p := newRawSFTP(t, c)
			in := m.Inject(tc.fault)
			r := tc.run(p)
			in.Remove()
			t.Log(r)
			if r.typ != fxpStatus || r.code != tc.code || !strings.Contains(r.msg, tc.text) {
				t.Errorf("%v, want status %d with %q", r, tc.code, tc.text)
			}
			if in.Hits() == 0 {
				t.Errorf("the fault never fired: the reply comes from elsewhere")
			}
			if d := fstest.DiffTrees(before, fstest.Tree(t, m)); d != "" {
				t.Errorf("the failed request changed the tree:\n%s", d)
			}
			// The session goes on.
			if r := p.req(fxpStat, sshString(nil, "/site/index.php")); r.typ != fxpAttrs {
				t.Errorf("STAT after the failure: %v", r)
			}
		})
	}

	t.Run("sha256sum, the checksum fails", func(t *testing.T) {
		in := m.Inject(memfs.Fault{Op: memfs.OpHash, Path: "/site/index.php", Err: syscall.EIO})
		defer in.Remove()
		out, errOut, code := run(t, c, "sha256sum /site/index.php")
		if code != 1 || out != "" || !strings.Contains(errOut, "sha256sum: /site/index.php:") || !strings.Contains(errOut, "input/output error") {
			t.Errorf("sha256sum: stdout %q stderr %q exit %d; want exit 1 and the error on stderr", out, errOut, code)
		}
	})

	if got := fstest.ReadFile(t, m, "/site/index.php"); string(got) != string(old) {
		t.Fatalf("index.php after every failure: %q", got)
	}
	// With no fault in force the same upload lands whole.
	p := newRawSFTP(t, c)
	if r := p.upload("/site/index.php", data); r.code != fxOK {
		t.Fatalf("clean upload: %v", r)
	}
	if got := fstest.ReadFile(t, m, "/site/index.php"); sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("index.php after a clean upload: %d bytes, sha256 %x; want %d bytes %x", len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

// TestSetgidDirectory: SETSTAT keeps a directory's setgid bit, as
// sftp-server does, and drops it from a file; an agent that refuses the
// bit (one older than the directory's exception refuses it everywhere)
// gets the mode without it and the client its OK, as before; a chmod the
// agent refuses anyway is still refused.
func TestSetgidDirectory(t *testing.T) {
	e, m := startMem(t)
	if err := m.Mkdir("/shared", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, m, "/shared/f", []byte("x"))
	p := newRawSFTP(t, sshClient(t, e, "alice"))
	setstat := func(name string, mode uint32) reply {
		body := binary.BigEndian.AppendUint32(sshString(nil, name), attrPermissions)
		return p.req(fxpSetstat, binary.BigEndian.AppendUint32(body, mode))
	}
	mode := func(name string) fs.FileMode {
		fi, err := m.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	for _, tc := range []struct {
		name  string
		path  string
		mode  uint32
		fault *memfs.Fault
		code  uint32
		want  fs.FileMode
	}{
		{"directory", "/shared", 0o2775, nil, fxOK, fs.ModeDir | fs.ModeSetgid | 0o775},
		{"directory, setgid cleared", "/shared", 0o755, nil, fxOK, fs.ModeDir | 0o755},
		{"directory, setuid dropped", "/shared", 0o6770, nil, fxOK, fs.ModeDir | fs.ModeSetgid | 0o770},
		{"file, setgid dropped", "/shared/f", 0o2755, nil, fxOK, 0o755},
		{"directory, an agent refusing setgid", "/shared", 0o2711,
			&memfs.Fault{Op: memfs.OpChmod, Path: "/shared", Nth: 1, Err: syscall.EPERM}, fxOK, fs.ModeDir | 0o711},
		{"directory, chmod refused", "/shared", 0o2700,
			&memfs.Fault{Op: memfs.OpChmod, Path: "/shared", Err: syscall.EPERM}, fxPermissionDenied, fs.ModeDir | 0o711},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				in := m.Inject(*tc.fault)
				defer in.Remove()
			}
			if r := setstat(tc.path, tc.mode); r.typ != fxpStatus || r.code != tc.code {
				t.Fatalf("SETSTAT %s %#o: %v, want status %d", tc.path, tc.mode, r, tc.code)
			}
			if got := mode(tc.path); got != tc.want {
				t.Errorf("%s after SETSTAT %#o: %v, want %v", tc.path, tc.mode, got, tc.want)
			}
		})
	}
}

// TestCopyDataIntoItselfEnds: copy-data to the source's end, into the
// same file through a symbolic link at a later offset, stops at the end
// the file had when it began, over a real agent; OpenSSH's sftp-server
// reads what it wrote and never answers (TestSFTPRandom seed 9253 hung
// both servers, sftp-server filling the disk).
func TestCopyDataIntoItselfEnds(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	p := newRawSFTP(t, sshClient(t, e, "alice"))
	f, l := p.openHandle("/f", fxfRead|fxfWrite), p.openHandle("/l", fxfRead|fxfWrite)
	body := binary.BigEndian.AppendUint64(sshString(sshString(nil, "copy-data"), f), 0)
	body = binary.BigEndian.AppendUint64(body, 0) // to the end
	body = binary.BigEndian.AppendUint64(sshString(body, l), 3)
	if r := p.req(fxpExtended, body); r.typ != fxpStatus || r.code != fxOK {
		t.Fatalf("copy-data: %v, want OK", r)
	}
	for _, h := range []string{f, l} {
		if r := p.closeReply(h); r.code != fxOK {
			t.Fatalf("close: %v", r)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(got) != "abcabcdef" {
		t.Fatalf("f holds %q (%v), want \"abcabcdef\"", got, err)
	}
}
