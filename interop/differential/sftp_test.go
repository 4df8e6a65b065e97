package differential_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// sftpSide is one SFTP server under test, as the steps see it.
type sftpSide struct {
	name string
	user string // the login name
	// prefix is the server path of the logical "/" the steps use: the
	// user's home directory on OpenSSH (which is not chrooted), "" on
	// upgate (whose "/" is the user's directory).
	prefix string
	dir    string // the same directory on disk
	a, b   *rawSFTP
	// dial opens one more SSH connection, closed when the test ends, for
	// a step that ends its session.
	dial func() *ssh.Client
	pc   *sftp.Client // pkg/sftp's client, on a connection of its own
	// handles maps a step's name for a handle to the server's handle.
	handles map[string]string
	// idle, if set, waits until the server holds no open file.
	idle func()
	// kill, if set, ends the server's sessions, one that no longer
	// answers included.
	kill func()
}

// uploadRenamedFrom0555 makes the directories made (with's specs), opens
// dir/f as the session's upload, makes dir 0555, renames the upload onto
// to (posix-rename), closes it and gives dir its mode back: the answers,
// and dir's listing.
func uploadRenamedFrom0555(s *sftpSide, dir, to string, made ...string) string {
	out := s.with(func() string { return "OK" }, made...)
	out += " " + s.open(s.a, "u0555", dir+"/f", pfWrite|pfCreat|pfTrunc, attrs{})
	r, err := s.a.setstat(s.p(dir), perms(0o555))
	out += " " + s.res(r, err)
	r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p(dir+"/f")), s.p(to)))
	out += " " + s.res(r, err) + " " + s.closeH(s.a, "u0555")
	r, err = s.a.setstat(s.p(dir), perms(0o755))
	return out + " " + s.res(r, err) + " " + s.listing(s.a, dir)
}

// p is the server path of a logical path ("/x").
func (s *sftpSide) p(logical string) string { return s.prefix + logical }

// unp turns a server path back into a logical one.
func (s *sftpSide) unp(server string) string {
	if s.prefix == "" {
		return server
	}
	if server == s.prefix {
		return "/"
	}
	if rest, ok := strings.CutPrefix(server, s.prefix+"/"); ok {
		return "/" + rest
	}
	return server
}

// h returns the handle a step stored under name, or a handle no server
// knows.
func (s *sftpSide) h(name string) string {
	if h, ok := s.handles[name]; ok {
		return h
	}
	return "no-such-handle-" + name
}

// fmtAttrs shows the attributes the comparison looks at: size (not for
// directories, whose size is the file system's business), type and
// permission bits, atime and mtime. uid and gid are left out (see
// deliberateDiffs).
func fmtAttrs(a attrs) string {
	var b strings.Builder
	// A link's size is its target's length, which differs for absolute
	// targets (OpenSSH's carry the home directory); "lstat size of /ln"
	// compares one with a relative target.
	typ := a.Perms & 0o170000
	isDirOrLink := a.Flags&attrPerms != 0 && (typ == 0o040000 || typ == 0o120000)
	if a.Flags&attrSize != 0 && !isDirOrLink {
		fmt.Fprintf(&b, "size=%d ", a.Size)
	}
	if a.Flags&attrPerms != 0 {
		fmt.Fprintf(&b, "mode=%07o ", a.Perms)
	} else {
		b.WriteString("mode=? ")
	}
	if a.Flags&attrACModTim != 0 {
		fmt.Fprintf(&b, "atime=%s mtime=%s", canonTime(int64(a.Atime)), canonTime(int64(a.Mtime)))
	} else {
		b.WriteString("times=?")
	}
	return b.String()
}

// longMode shows the columns of a READDIR longname (OpenSSH's ls_file,
// printed as-is by sftp's ls -l) that the comparison looks at: the mode;
// for files, the link count and the size; and the date, the 12 characters
// before the name ("%b %e %H:%M" or "%b %e  %Y"). Left out: the owner and
// group columns (deliberateDiffs), a directory's link count (it counts
// subdirectories that exist on one side only, see hasCtl) and a link's
// size (its target's length, see fmtAttrs). The date of an entry whose
// mtime is "now" (canonTime) keeps its month and day, digits as "n": the
// two servers run minutes apart, and sftp-server shows the year instead
// of the time for an mtime a second ahead of its clock (a file's time is
// finer than time(3)'s on this kernel: TestSFTPRandom seed 12058).
func longMode(e nameEntry) string {
	f := strings.Fields(e.Long)
	rest, ok := strings.CutSuffix(e.Long, " "+e.Name)
	if len(f) < 5 || !ok || len(rest) < 12 {
		return fmt.Sprintf("long=?%q", e.Long)
	}
	date := rest[len(rest)-12:]
	if e.Attrs.Flags&attrACModTim != 0 && canonTime(int64(e.Attrs.Mtime)) == "now" {
		date = strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return 'n'
			}
			return r
		}, date[:6]) + " now"
	}
	cols := f[0]
	if strings.HasPrefix(f[0], "-") {
		cols += " " + f[1] + " " + f[4]
	} else if !strings.HasPrefix(f[0], "d") {
		cols += " " + f[1]
	}
	return fmt.Sprintf("long=%s %q", cols, date)
}

// res shows an answer: the status, or what it carries.
func (s *sftpSide) res(r reply, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	switch r.Type {
	case fxpStatus:
		return r.status()
	case fxpHandle:
		return "HANDLE"
	case fxpData:
		return fmt.Sprintf("DATA %d bytes %q", len(r.Data), trunc(r.Data))
	case fxpAttrs:
		return "ATTRS " + fmtAttrs(r.Attrs)
	case fxpName:
		var l []string
		for _, e := range r.Names {
			l = append(l, fmt.Sprintf("%q", s.unp(e.Name)))
		}
		return "NAME " + strings.Join(l, " ")
	case fxpExtendedReply:
		return fmt.Sprintf("EXTENDED_REPLY %d bytes", len(r.Data))
	}
	return fmt.Sprintf("type %d", r.Type)
}

func trunc(b []byte) string {
	if len(b) > 64 {
		sum := sha256.Sum256(b)
		return fmt.Sprintf("%s...sha256=%x", b[:32], sum[:8])
	}
	return string(b)
}

// open opens path on session c and stores the handle as name.
func (s *sftpSide) open(c *rawSFTP, name, path string, pflags uint32, a attrs) string {
	r, err := c.open(s.p(path), pflags, a)
	if err == nil && r.Type == fxpHandle {
		s.handles[name] = r.Handle
	}
	return s.res(r, err)
}

// closeH closes the handle stored as name.
func (s *sftpSide) closeH(c *rawSFTP, name string) string {
	r, err := c.close(s.h(name))
	delete(s.handles, name)
	return s.res(r, err)
}

// listing reads a directory and shows every entry with its attributes
// and longname mode, sorted by name.
func (s *sftpSide) listing(c *rawSFTP, path string) string {
	es, r, err := c.readdirAll(s.p(path))
	if err != nil || !r.ok() {
		return s.res(r, err)
	}
	var l []string
	for _, e := range es {
		if e.Name == "." || e.Name == ".." {
			continue // compared once, by "readdir / lists . and .."
		}
		if hasCtl(e.Name) {
			continue // compared apart (deliberateDiffs), by "readdir /names: control characters"
		}
		l = append(l, fmt.Sprintf("%q{%s %s}", e.Name, fmtAttrs(e.Attrs), longMode(e)))
	}
	return "ENTRIES " + strings.Join(l, " ")
}

// timesThenWrite opens path (as handle name) for a new upload, writes,
// sets its times with set, writes again, closes and stats it: the answers
// in a row. A write after the times moves the mtime, as futimens(2)'s.
func (s *sftpSide) timesThenWrite(name, path string, set func() (reply, error)) string {
	if r := s.open(s.a, name, path, pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
		return r
	}
	r, err := s.a.write(s.h(name), 0, []byte("times"))
	out := s.res(r, err)
	r, err = set()
	out += " " + s.res(r, err)
	r, err = s.a.write(s.h(name), 5, []byte("!"))
	out += " " + s.res(r, err) + " " + s.closeH(s.a, name)
	r, err = s.a.pathOp(fxpStat, s.p(path))
	return out + " " + s.res(r, err)
}

// resaveRenamedUpload opens from for a new upload, renames it to to while
// it is open, opens to WRITE|TRUNC, writes NEW through that and closes
// both: the answers in a row. The handles are named after the paths.
func (s *sftpSide) resaveRenamedUpload(from, to string) string {
	if r := s.open(s.a, from, from, pfRead|pfWrite|pfCreat|pfTrunc, perms(0o644)); r != "HANDLE" {
		return r
	}
	r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p(from)), s.p(to)))
	out := s.res(r, err)
	if r := s.open(s.a, to, to, pfWrite|pfTrunc, attrs{}); r != "HANDLE" {
		return out + " " + r
	}
	r, err = s.a.write(s.h(to), 0, []byte("NEW"))
	return out + " " + s.res(r, err) + " " + s.closeH(s.a, to) + " " + s.closeH(s.a, from)
}

// readAll reads a whole file through a fresh handle on session c, 32 KiB
// per READ, and shows its length and hash.
func (s *sftpSide) readAll(c *rawSFTP, path string) string {
	r, err := c.open(s.p(path), pfRead, attrs{})
	if err != nil || r.Type != fxpHandle {
		return "open: " + s.res(r, err)
	}
	h := r.Handle
	defer c.close(h) //nolint:errcheck
	var data []byte
	for i := 0; i < 10000; i++ {
		r, err = c.read(h, uint64(len(data)), 32768)
		if err != nil {
			return s.res(r, err)
		}
		if r.Type == fxpStatus {
			if r.Code == 1 {
				return fmt.Sprintf("CONTENT %d bytes %q", len(data), trunc(data))
			}
			return "read: " + r.status()
		}
		data = append(data, r.Data...)
	}
	return "file too long"
}

// pcErr shows a pkg/sftp client error as its SFTP status.
func pcErr(err error) string {
	if err == nil {
		return "OK"
	}
	var se *sftp.StatusError
	switch {
	case errors.As(err, &se):
		if n, ok := statusNames[se.Code]; ok {
			return n
		}
		return fmt.Sprintf("status%d", se.Code)
	case errors.Is(err, fs.ErrNotExist):
		return "NO_SUCH_FILE"
	case errors.Is(err, fs.ErrPermission):
		return "PERMISSION_DENIED"
	case errors.Is(err, io.EOF):
		return "EOF"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "errno " + errno.Error()
	}
	return fmt.Sprintf("error %T", err)
}

func pcInfo(fi os.FileInfo, err error) string {
	if err != nil {
		return pcErr(err)
	}
	mt := canonTime(fi.ModTime().Unix())
	if fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Sprintf("%q %v mtime=%s", fi.Name(), fi.Mode(), mt)
	}
	return fmt.Sprintf("%q %v size=%d mtime=%s", fi.Name(), fi.Mode(), fi.Size(), mt)
}

// pattern is deterministic test content of n bytes.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Fixed times the steps set (seconds since the epoch).
const (
	tAtime = 1000000000 // 2001-09-09
	tMtime = 1100000000 // 2004-11-09
	tDir   = 1200000000 // 2008-01-10
)

func times(a, m uint32) attrs { return attrs{Flags: attrACModTim, Atime: a, Mtime: m} }
func perms(p uint32) attrs    { return attrs{Flags: attrPerms, Perms: p} }
func size(n uint64) attrs     { return attrs{Flags: attrSize, Size: n} }

// Names that need care.
var (
	long255 = strings.Repeat("L", 255)
	long256 = strings.Repeat("M", 256)
	namesOK = []string{"with space.txt", "héllo wörld ☃.txt", "bad\xff\xfe.txt", "back\\slash", "star*?[x]", "-dash", ".hidden", "trailing space ", "quote\"'`$(x)"}
)

// sftpStep is one operation of the sequence, run on one server.
type sftpStep struct {
	name string
	run  func(s *sftpSide) string
}

// sftpSteps is the sequence run against every server, in order. Steps
// with "B:" act on a second, concurrent session of the same user; "pc:"
// steps use pkg/sftp's client (a third session); the others speak raw
// SFTP on session A. Paths are logical: "/" is the user's directory.
func sftpSteps() []sftpStep {
	data1 := []byte("hello world\n")
	big := pattern(1<<20+12345, 7)
	steps := []sftpStep{
		// Version and extensions.
		{"protocol version", func(s *sftpSide) string { return fmt.Sprint(s.a.version) }},
		{"extensions advertised", func(s *sftpSide) string { return s.a.extNames() }},

		// realpath.
		{"realpath .", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, "."); return s.res(r, err) }},
		{"realpath empty string", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, ""); return s.res(r, err) }},
		{"realpath /x/../y (missing)", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpRealpath, s.p("/x/../y"))
			return s.res(r, err)
		}},
		{"realpath a/./b/.. relative", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, "a/./b/.."); return s.res(r, err) }},

		// mkdir.
		{"mkdir /d", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/d"), attrs{}); return s.res(r, err) }},
		{"stat /d", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d")); return s.res(r, err) }},
		{"mkdir /d again (exists)", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/d"), attrs{}); return s.res(r, err) }},
		{"mkdir /p/q (missing parent)", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/p/q"), attrs{}); return s.res(r, err) }},
		{"mkdir /d700 mode 0700", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/d700"), perms(0o700)); return s.res(r, err) }},
		{"stat /d700", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d700")); return s.res(r, err) }},
		{"mkdir /d777 mode 0777 (umask 022)", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/d777"), perms(0o777))
			return s.res(r, err)
		}},
		{"stat /d777", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777")); return s.res(r, err) }},
		{"mkdir /d/sub", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/d/sub"), attrs{}); return s.res(r, err) }},

		// Create, write, read.
		{"open /d/f1 CREAT|TRUNC|WRITE perms 0640", func(s *sftpSide) string {
			return s.open(s.a, "f1", "/d/f1", pfWrite|pfCreat|pfTrunc, perms(0o640))
		}},
		{"write /d/f1", func(s *sftpSide) string { r, err := s.a.write(s.h("f1"), 0, data1); return s.res(r, err) }},
		{"close /d/f1", func(s *sftpSide) string { return s.closeH(s.a, "f1") }},
		{"stat /d/f1", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"open /d/f2 CREAT|EXCL|WRITE no attrs", func(s *sftpSide) string {
			return s.open(s.a, "f2", "/d/f2", pfWrite|pfCreat|pfExcl, attrs{})
		}},
		{"close /d/f2", func(s *sftpSide) string { return s.closeH(s.a, "f2") }},
		{"stat /d/f2 (empty)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f2")); return s.res(r, err) }},
		{"open /d/f2 CREAT|EXCL again (exists)", func(s *sftpSide) string {
			return s.open(s.a, "f2x", "/d/f2", pfWrite|pfCreat|pfExcl, attrs{})
		}},
		{"open /nodir/f CREAT|WRITE (missing parent)", func(s *sftpSide) string {
			return s.open(s.a, "nodir", "/nodir/f", pfWrite|pfCreat, attrs{})
		}},
		{"open /missing READ", func(s *sftpSide) string { return s.open(s.a, "missing", "/missing", pfRead, attrs{}) }},
		{"open /missing WRITE|TRUNC without CREAT", func(s *sftpSide) string {
			return s.open(s.a, "missing2", "/missing", pfWrite|pfTrunc, attrs{})
		}},
		{"open /d READ (a directory)", func(s *sftpSide) string { return s.open(s.a, "dirh", "/d", pfRead, attrs{}) }},
		{"read the directory handle", func(s *sftpSide) string { r, err := s.a.read(s.h("dirh"), 0, 100); return s.res(r, err) }},
		{"close the directory handle", func(s *sftpSide) string { return s.closeH(s.a, "dirh") }},
		{"open /d WRITE (a directory)", func(s *sftpSide) string { return s.open(s.a, "dirw", "/d", pfWrite, attrs{}) }},
		{"open /d/f1 pflags 0", func(s *sftpSide) string { return s.open(s.a, "pf0", "/d/f1", 0, attrs{}) }},
		{"read pflags-0 handle", func(s *sftpSide) string { r, err := s.a.read(s.h("pf0"), 0, 100); return s.res(r, err) }},
		{"close pflags-0 handle", func(s *sftpSide) string { return s.closeH(s.a, "pf0") }},
		// The access mode follows READ and WRITE alone (OpenSSH's
		// flags_from_portable): CREAT without WRITE creates a file and
		// reads it, O_RDONLY.
		{"open /rcr READ|CREAT (missing)", func(s *sftpSide) string { return s.open(s.a, "rcr0", "/rcr", pfRead|pfCreat, attrs{}) }},
		{"write to the READ|CREAT handle", func(s *sftpSide) string { r, err := s.a.write(s.h("rcr0"), 0, []byte("x")); return s.res(r, err) }},
		{"read the READ|CREAT handle", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr0"), 0, 100); return s.res(r, err) }},
		{"close the READ|CREAT handle", func(s *sftpSide) string { return s.closeH(s.a, "rcr0") }},
		{"stat /rcr", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/rcr")); return s.res(r, err) }},
		{"open /cro CREAT alone (missing)", func(s *sftpSide) string { return s.open(s.a, "cro", "/cro", pfCreat, attrs{}) }},
		{"write to the CREAT-alone handle", func(s *sftpSide) string { r, err := s.a.write(s.h("cro"), 0, []byte("x")); return s.res(r, err) }},
		{"read the CREAT-alone handle", func(s *sftpSide) string { r, err := s.a.read(s.h("cro"), 0, 100); return s.res(r, err) }},
		{"close the CREAT-alone handle", func(s *sftpSide) string { return s.closeH(s.a, "cro") }},
		{"stat /cro", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/cro")); return s.res(r, err) }},
		{"open /d/f1 READ|APPEND, write", func(s *sftpSide) string {
			if r := s.open(s.a, "ra", "/d/f1", pfRead|pfAppend, attrs{}); r != "HANDLE" {
				return r
			}
			r, err := s.a.write(s.h("ra"), 0, []byte("x"))
			return s.res(r, err) + " / " + s.closeH(s.a, "ra") + " / " + s.readAll(s.a, "/d/f1")
		}},
		{"remove /rcr and /cro", func(s *sftpSide) string {
			r1, err1 := s.a.pathOp(fxpRemove, s.p("/rcr"))
			r2, err2 := s.a.pathOp(fxpRemove, s.p("/cro"))
			return s.res(r1, err1) + " " + s.res(r2, err2)
		}},
		{"open /d/f1 READ", func(s *sftpSide) string { return s.open(s.a, "r1", "/d/f1", pfRead, attrs{}) }},
		{"read /d/f1 at 6, 100 bytes (short)", func(s *sftpSide) string { r, err := s.a.read(s.h("r1"), 6, 100); return s.res(r, err) }},
		{"read /d/f1 at EOF", func(s *sftpSide) string { r, err := s.a.read(s.h("r1"), 12, 100); return s.res(r, err) }},
		{"read /d/f1 past EOF", func(s *sftpSide) string { r, err := s.a.read(s.h("r1"), 1000, 100); return s.res(r, err) }},
		{"fstat read handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("r1"))); return s.res(r, err) }},
		{"write to read-only handle", func(s *sftpSide) string { r, err := s.a.write(s.h("r1"), 0, []byte("x")); return s.res(r, err) }},
		{"close read handle", func(s *sftpSide) string { return s.closeH(s.a, "r1") }},
		{"close it again (stale handle)", func(s *sftpSide) string {
			s.handles["stale"] = "definitely-not-a-handle"
			return s.closeH(s.a, "stale")
		}},
		// Requests on a handle closed before (sftp-server: FAILURE, as
		// for any handle it does not know; CLOSE and fsync NO_SUCH_FILE).
		{"open /d/f1 READ|WRITE, close it, keep the handle", func(s *sftpSide) string {
			r := s.open(s.a, "cl", "/d/f1", pfRead|pfWrite, attrs{})
			h := s.h("cl")
			r += " " + s.closeH(s.a, "cl")
			s.handles["cl"] = h
			return r
		}},
		{"read the closed handle", func(s *sftpSide) string { r, err := s.a.read(s.h("cl"), 0, 100); return s.res(r, err) }},
		{"write the closed handle", func(s *sftpSide) string { r, err := s.a.write(s.h("cl"), 0, []byte("x")); return s.res(r, err) }},
		{"fstat the closed handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("cl"))); return s.res(r, err) }},
		{"fsetstat the closed handle", func(s *sftpSide) string { r, err := s.a.fsetstat(s.h("cl"), size(1)); return s.res(r, err) }},
		{"readdir the closed handle", func(s *sftpSide) string { r, err := s.a.request(fxpReaddir, str(nil, s.h("cl"))); return s.res(r, err) }},
		{"fstatvfs@openssh.com the closed handle", func(s *sftpSide) string {
			r, err := s.a.extended("fstatvfs@openssh.com", str(nil, s.h("cl")))
			return s.res(r, err)
		}},
		{"fsync@openssh.com the closed handle", func(s *sftpSide) string {
			r, err := s.a.extended("fsync@openssh.com", str(nil, s.h("cl")))
			return s.res(r, err)
		}},
		{"copy-data from and to the closed handle", func(s *sftpSide) string {
			p := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cl")), 0), 0)
			p = binary.BigEndian.AppendUint64(str(p, s.h("cl")), 0)
			r, err := s.a.extended("copy-data", p)
			return s.res(r, err)
		}},
		{"close the closed handle", func(s *sftpSide) string { return s.closeH(s.a, "cl") }},
		{"content /d/f1 after the closed handle's requests", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		// Requests on a handle of the other kind (sftp-server: handle_to_fd
		// fails for a directory handle, handle_to_dir for a file handle:
		// FAILURE; fsync NO_SUCH_FILE). The READ must leave the listing
		// whole.
		{"opendir /d, open /d/f1 READ|WRITE", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpOpendir, s.p("/d"))
			if err == nil && r.Type == fxpHandle {
				s.handles["dk"] = r.Handle
			}
			return s.res(r, err) + " " + s.open(s.a, "fk", "/d/f1", pfRead|pfWrite, attrs{})
		}},
		{"read the directory handle", func(s *sftpSide) string { r, err := s.a.read(s.h("dk"), 0, 100); return s.res(r, err) }},
		{"write the directory handle", func(s *sftpSide) string { r, err := s.a.write(s.h("dk"), 0, []byte("x")); return s.res(r, err) }},
		{"fstat the directory handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("dk"))); return s.res(r, err) }},
		{"fsetstat the directory handle", func(s *sftpSide) string { r, err := s.a.fsetstat(s.h("dk"), size(1)); return s.res(r, err) }},
		{"fstatvfs@openssh.com the directory handle", func(s *sftpSide) string {
			r, err := s.a.extended("fstatvfs@openssh.com", str(nil, s.h("dk")))
			return s.res(r, err)
		}},
		{"fsync@openssh.com the directory handle", func(s *sftpSide) string {
			r, err := s.a.extended("fsync@openssh.com", str(nil, s.h("dk")))
			return s.res(r, err)
		}},
		{"copy-data from the directory handle to a file handle", func(s *sftpSide) string {
			p := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("dk")), 0), 0)
			p = binary.BigEndian.AppendUint64(str(p, s.h("fk")), 0)
			r, err := s.a.extended("copy-data", p)
			return s.res(r, err)
		}},
		{"readdir the file handle", func(s *sftpSide) string { r, err := s.a.request(fxpReaddir, str(nil, s.h("fk"))); return s.res(r, err) }},
		{"readdir a file handle opened READ", func(s *sftpSide) string {
			r := s.open(s.a, "fr", "/d/f1", pfRead, attrs{})
			rd, err := s.a.request(fxpReaddir, str(nil, s.h("fr")))
			return r + " " + s.res(rd, err) + " " + s.closeH(s.a, "fr")
		}},
		{"readdir the directory handle after those: the whole listing", func(s *sftpSide) string {
			var names []string
			for i := 0; i < 100; i++ {
				r, err := s.a.request(fxpReaddir, str(nil, s.h("dk")))
				if err != nil || r.Type != fxpName {
					sort.Strings(names)
					return fmt.Sprintf("%q then %s", names, s.res(r, err))
				}
				for _, e := range r.Names {
					if !hasCtl(e.Name) {
						names = append(names, e.Name)
					}
				}
			}
			return "directory did not end within 100 READDIRs"
		}},
		{"close the directory and file handles", func(s *sftpSide) string { return s.closeH(s.a, "dk") + " " + s.closeH(s.a, "fk") }},

		// A handle kept open sees what changed since it last read: the
		// session's own writes through other handles, before and after
		// they close, and another session's (sftp-server reads with
		// pread every time; upgate reads ahead and must not answer from
		// what it read before).
		{"fixture /rc", func(s *sftpSide) string { return s.writeFile("/rc", []byte("0123456789")) }},
		{"open /rc READ (kept open)", func(s *sftpSide) string { return s.open(s.a, "rcr", "/rc", pfRead, attrs{}) }},
		{"read /rc 0-4 on the kept handle", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 0, 5); return s.res(r, err) }},
		{"open /rc WRITE (in place)", func(s *sftpSide) string { return s.open(s.a, "rcw", "/rc", pfWrite, attrs{}) }},
		{"write Z at 7 in place", func(s *sftpSide) string { r, err := s.a.write(s.h("rcw"), 7, []byte("Z")); return s.res(r, err) }},
		{"read /rc 5-9 on the kept handle (the other handle's write)", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 5, 5); return s.res(r, err) }},
		{"write YY at 0 in place", func(s *sftpSide) string { r, err := s.a.write(s.h("rcw"), 0, []byte("YY")); return s.res(r, err) }},
		{"close the in-place handle", func(s *sftpSide) string { return s.closeH(s.a, "rcw") }},
		{"read /rc again from 0 on the kept handle", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 0, 100); return s.res(r, err) }},
		{"open /rc WRITE|APPEND", func(s *sftpSide) string { return s.open(s.a, "rca", "/rc", pfWrite|pfAppend, attrs{}) }},
		{"append MORE", func(s *sftpSide) string { r, err := s.a.write(s.h("rca"), 0, []byte("MORE")); return s.res(r, err) }},
		{"read past the old end on the kept handle (append still open)", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 10, 100); return s.res(r, err) }},
		{"fstat the kept handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("rcr"))); return s.res(r, err) }},
		{"close the append handle", func(s *sftpSide) string { return s.closeH(s.a, "rca") }},
		{"B: open /rc WRITE|APPEND", func(s *sftpSide) string { return s.open(s.b, "rcb", "/rc", pfWrite|pfAppend, attrs{}) }},
		{"B: append BBB", func(s *sftpSide) string { r, err := s.b.write(s.h("rcb"), 0, []byte("BBB")); return s.res(r, err) }},
		{"B: close the append handle", func(s *sftpSide) string { return s.closeH(s.b, "rcb") }},
		{"read past the end on the kept handle (B's append)", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 14, 100); return s.res(r, err) }},
		{"read the kept handle from 0 once more", func(s *sftpSide) string { r, err := s.a.read(s.h("rcr"), 0, 100); return s.res(r, err) }},
		{"close the kept handle", func(s *sftpSide) string { return s.closeH(s.a, "rcr") }},
		// A write in place (not an upload) is in the file once answered,
		// for every session, as sftp-server's pwrite is.
		{"fixture /log", func(s *sftpSide) string { return s.writeFile("/log", []byte("line1\n")) }},
		{"open /log WRITE|APPEND", func(s *sftpSide) string { return s.open(s.a, "lga", "/log", pfWrite|pfAppend, attrs{}) }},
		{"append line2", func(s *sftpSide) string { r, err := s.a.write(s.h("lga"), 0, []byte("line2\n")); return s.res(r, err) }},
		{"B: read /log while A appends", func(s *sftpSide) string { return s.readAll(s.b, "/log") }},
		{"B: stat /log while A appends", func(s *sftpSide) string { r, err := s.b.pathOp(fxpStat, s.p("/log")); return s.res(r, err) }},
		{"open /log WRITE (in place)", func(s *sftpSide) string { return s.open(s.a, "lgw", "/log", pfWrite, attrs{}) }},
		{"write LINE at 0 in place", func(s *sftpSide) string { r, err := s.a.write(s.h("lgw"), 0, []byte("LINE")); return s.res(r, err) }},
		{"B: read /log while A writes in place", func(s *sftpSide) string { return s.readAll(s.b, "/log") }},
		{"close the in-place /log handle", func(s *sftpSide) string { return s.closeH(s.a, "lgw") }},
		{"close the append /log handle", func(s *sftpSide) string { return s.closeH(s.a, "lga") }},
		{"open /ru CREAT|TRUNC|WRITE", func(s *sftpSide) string { return s.open(s.a, "ru1", "/ru", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write abc to /ru", func(s *sftpSide) string { r, err := s.a.write(s.h("ru1"), 0, []byte("abc")); return s.res(r, err) }},
		{"open /ru READ (a second handle on the upload)", func(s *sftpSide) string { return s.open(s.a, "ru2", "/ru", pfRead, attrs{}) }},
		{"read the second handle", func(s *sftpSide) string { r, err := s.a.read(s.h("ru2"), 0, 100); return s.res(r, err) }},
		{"write def at 3 through the first", func(s *sftpSide) string { r, err := s.a.write(s.h("ru1"), 3, []byte("def")); return s.res(r, err) }},
		{"read the second handle again", func(s *sftpSide) string { r, err := s.a.read(s.h("ru2"), 0, 100); return s.res(r, err) }},
		{"fstat the second handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("ru2"))); return s.res(r, err) }},
		{"close the upload of /ru", func(s *sftpSide) string { return s.closeH(s.a, "ru1") }},
		{"close the second handle on /ru", func(s *sftpSide) string { return s.closeH(s.a, "ru2") }},
		{"content /ru", func(s *sftpSide) string { return s.readAll(s.a, "/ru") }},

		// Writes in place, append, sparse.
		{"open /d/f1 WRITE (no trunc)", func(s *sftpSide) string { return s.open(s.a, "w1", "/d/f1", pfWrite, attrs{}) }},
		{"write XY at 2", func(s *sftpSide) string { r, err := s.a.write(s.h("w1"), 2, []byte("XY")); return s.res(r, err) }},
		{"close in-place handle", func(s *sftpSide) string { return s.closeH(s.a, "w1") }},
		{"content /d/f1 after in-place write", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		{"open /d/f1 WRITE|APPEND", func(s *sftpSide) string { return s.open(s.a, "ap", "/d/f1", pfWrite|pfAppend, attrs{}) }},
		{"write 'tail' at offset 0 on the append handle", func(s *sftpSide) string {
			r, err := s.a.write(s.h("ap"), 0, []byte("tail"))
			return s.res(r, err)
		}},
		{"close append handle", func(s *sftpSide) string { return s.closeH(s.a, "ap") }},
		{"content /d/f1 after append", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		{"open /sparse CREAT|WRITE", func(s *sftpSide) string { return s.open(s.a, "sp", "/sparse", pfWrite|pfCreat, attrs{}) }},
		{"write at 100000 (hole)", func(s *sftpSide) string { r, err := s.a.write(s.h("sp"), 100000, []byte("end")); return s.res(r, err) }},
		{"fstat sparse handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("sp"))); return s.res(r, err) }},
		{"close sparse", func(s *sftpSide) string { return s.closeH(s.a, "sp") }},
		{"content /sparse", func(s *sftpSide) string { return s.readAll(s.a, "/sparse") }},
		{"open /d/f1 CREAT|TRUNC|WRITE perms 0600 (existing 0640)", func(s *sftpSide) string {
			return s.open(s.a, "tr", "/d/f1", pfWrite|pfCreat|pfTrunc, perms(0o600))
		}},
		{"write new content to /d/f1", func(s *sftpSide) string {
			r, err := s.a.write(s.h("tr"), 0, []byte("new content\n"))
			return s.res(r, err)
		}},
		{"B: read /d/f1 while A rewrites it", func(s *sftpSide) string { return s.readAll(s.b, "/d/f1") }},
		{"B: stat /d/f1 while A rewrites it", func(s *sftpSide) string { r, err := s.b.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"A: stat /d/f1 while rewriting it", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"close rewrite", func(s *sftpSide) string { return s.closeH(s.a, "tr") }},
		{"B: content /d/f1 after the rewrite", func(s *sftpSide) string { return s.readAll(s.b, "/d/f1") }},
		{"stat /d/f1 after rewrite (mode kept)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},

		// A session sees its own upload in progress.
		{"open /up CREAT|TRUNC|WRITE", func(s *sftpSide) string { return s.open(s.a, "up", "/up", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"lstat /up right after open", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/up")); return s.res(r, err) }},
		{"write 5 bytes to /up", func(s *sftpSide) string { r, err := s.a.write(s.h("up"), 0, []byte("abcde")); return s.res(r, err) }},
		{"lstat /up during upload", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/up")); return s.res(r, err) }},
		{"stat /up during upload", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/up")); return s.res(r, err) }},
		{"fstat /up handle", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("up"))); return s.res(r, err) }},
		{"readdir / during upload", func(s *sftpSide) string { return s.listing(s.a, "/") }},
		{"read /up during upload (new handle)", func(s *sftpSide) string { return s.readAll(s.a, "/up") }},
		{"B: lstat /up while A uploads it", func(s *sftpSide) string { r, err := s.b.pathOp(fxpLstat, s.p("/up")); return s.res(r, err) }},
		{"B: readdir / while A uploads /up", func(s *sftpSide) string {
			es, r, err := s.b.readdirAll(s.p("/"))
			if err != nil || !r.ok() {
				return s.res(r, err)
			}
			for _, e := range es {
				if e.Name == "up" {
					return "up listed: " + fmtAttrs(e.Attrs)
				}
			}
			return "up not listed"
		}},
		{"setstat /up mode 0600 during upload", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/up"), perms(0o600)); return s.res(r, err) }},
		{"stat /up after setstat during upload", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/up")); return s.res(r, err) }},
		{"fsetstat /up times during upload", func(s *sftpSide) string {
			r, err := s.a.fsetstat(s.h("up"), times(tAtime, tMtime))
			return s.res(r, err)
		}},
		{"fsync@openssh.com /up", func(s *sftpSide) string {
			r, err := s.a.extended("fsync@openssh.com", str(nil, s.h("up")))
			return s.res(r, err)
		}},
		{"fstatvfs@openssh.com /up handle", func(s *sftpSide) string {
			r, err := s.a.extended("fstatvfs@openssh.com", str(nil, s.h("up")))
			return s.statvfs(r, err)
		}},
		{"close /up", func(s *sftpSide) string { return s.closeH(s.a, "up") }},
		{"stat /up after close", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/up")); return s.res(r, err) }},
		// Times set on an open file stand until a write after them,
		// which moves the mtime, as futimens(2)'s: through the handle,
		// by path on the session's upload, and in place.
		{"/tmw: open CREAT|WRITE|TRUNC, write, fsetstat times, write after them, close, stat", func(s *sftpSide) string {
			return s.timesThenWrite("tmw", "/tmw", func() (reply, error) { return s.a.fsetstat(s.h("tmw"), times(tAtime, tMtime)) })
		}},
		{"/tmw2: open CREAT|WRITE|TRUNC, write, setstat times by path, write after them, close, stat", func(s *sftpSide) string {
			return s.timesThenWrite("tmw2", "/tmw2", func() (reply, error) { return s.a.setstat(s.p("/tmw2"), times(tAtime, tMtime)) })
		}},
		{"open /tmw WRITE (in place)", func(s *sftpSide) string { return s.open(s.a, "tmw3", "/tmw", pfWrite, attrs{}) }},
		{"fsetstat /tmw times in place", func(s *sftpSide) string {
			r, err := s.a.fsetstat(s.h("tmw3"), times(tAtime, tMtime))
			return s.res(r, err)
		}},
		{"stat /tmw after the times in place", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/tmw")); return s.res(r, err) }},
		{"write /tmw in place after the times", func(s *sftpSide) string { r, err := s.a.write(s.h("tmw3"), 0, []byte("T")); return s.res(r, err) }},
		{"close /tmw in place", func(s *sftpSide) string { return s.closeH(s.a, "tmw3") }},
		{"stat /tmw after the write in place", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/tmw")); return s.res(r, err) }},
		// A save over a file keeps its atime, as a truncating open keeps
		// the inode's.
		{"setstat /tmw2 times, upload over it, stat", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/tmw2"), times(tAtime, tMtime))
			out := s.res(r, err)
			if r := s.open(s.a, "tmw4", "/tmw2", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return out + " " + r
			}
			r, err = s.a.write(s.h("tmw4"), 0, []byte("saved"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tmw4")
			r, err = s.a.pathOp(fxpStat, s.p("/tmw2"))
			return out + " " + s.res(r, err)
		}},
		// A read at the end of a file is a read(2) still: its atime moves
		// (relatime: the atime set is older than the mtime).
		{"upload /tmw6 empty, setstat times, open READ, read, fstat, close", func(s *sftpSide) string {
			if r := s.open(s.a, "tmw6", "/tmw6", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return r
			}
			out := s.closeH(s.a, "tmw6")
			r, err := s.a.setstat(s.p("/tmw6"), times(tAtime, tMtime))
			out += " " + s.res(r, err)
			if r := s.open(s.a, "tmw6", "/tmw6", pfRead, attrs{}); r != "HANDLE" {
				return out + " " + r
			}
			r, err = s.a.read(s.h("tmw6"), 0, 100)
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("tmw6")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "tmw6")
		}},
		// A read after times set through the handle is a read(2) too,
		// though the data was read ahead before them (TestSFTPRandom
		// seed 3111): the atime moves.
		{"upload /tmw7, write, read past its end, fsetstat times, read, fstat, close", func(s *sftpSide) string {
			if r := s.open(s.a, "tmw7", "/tmw7", pfRead|pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return r
			}
			r, err := s.a.write(s.h("tmw7"), 0, []byte("P1"))
			out := s.res(r, err)
			r, err = s.a.read(s.h("tmw7"), 20, 3)
			out += " " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("tmw7"), times(tAtime, tMtime))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("tmw7"), 0, 100)
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("tmw7")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "tmw7")
		}},
		// Times set through another name of a file (a symbolic link)
		// that the session reads: its next read is a read(2) too (a
		// review).
		// FSETSTAT of times through a handle open for reading comes
		// after the session's writes answered before it, as futimens on
		// sftp-server: a held-back write pushed after it moved the mtime
		// (TestSFTPRandom seed 10397).
		{"create /rts, open it READ, write at 0 and 20, FSETSTAT times through the reader, close both, stat", func(s *sftpSide) string {
			out := s.open(s.a, "rtw", "/rts", pfWrite|pfCreat|pfExcl, attrs{}) + " " + s.open(s.a, "rtr", "/rts", pfRead, attrs{})
			for _, w := range []struct {
				off  uint64
				data string
			}{{0, "Y24"}, {20, "A26"}} {
				r, err := s.a.write(s.h("rtw"), w.off, []byte(w.data))
				out += " " + s.res(r, err)
			}
			r, err := s.a.fsetstat(s.h("rtr"), times(tAtime, tMtime))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rtw") + " " + s.closeH(s.a, "rtr")
			r, err = s.a.pathOp(fxpStat, s.p("/rts"))
			return out + " " + s.res(r, err)
		}},
		{"upload /tml, symlink /tml.l, open /tml READ, read, setstat /tml.l times, read, fstat", func(s *sftpSide) string {
			if r := s.open(s.a, "tml", "/tml", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return r
			}
			r, err := s.a.write(s.h("tml"), 0, []byte("linked data"))
			out := s.res(r, err) + " " + s.closeH(s.a, "tml")
			r, err = s.a.symlink("tml", s.p("/tml.l"))
			out += " " + s.res(r, err)
			if r := s.open(s.a, "tmlr", "/tml", pfRead, attrs{}); r != "HANDLE" {
				return out + " " + r
			}
			r, err = s.a.read(s.h("tmlr"), 0, 3)
			out += " " + s.res(r, err)
			r, err = s.a.setstat(s.p("/tml.l"), times(tAtime, tMtime))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("tmlr"), 3, 100)
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("tmlr")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "tmlr")
		}},
		// A handle open for reading reads what the session's later save
		// of its path writes, as a descriptor of the file that save's
		// O_TRUNC emptied (TestSSHFSRandom seed 1955); one whose path
		// was removed first keeps the removed file.
		{"open /rfo READ, read, save /rfo, read, fstat, close the save, read; open /rfg READ, remove it, save it, read", func(s *sftpSide) string {
			out := s.open(s.a, "rfw", "/rfo", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("rfw"), 0, []byte("old content"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rfw")
			out += " " + s.open(s.a, "rfr", "/rfo", pfRead, attrs{})
			r, err = s.a.read(s.h("rfr"), 0, 100)
			out += " " + s.res(r, err) + " " + s.open(s.a, "rfw", "/rfo", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("rfw"), 0, []byte("new save"))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("rfr"), 0, 100)
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("rfr")))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rfw")
			r, err = s.a.read(s.h("rfr"), 4, 100)
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rfr") + ";"
			out += " " + s.open(s.a, "rgw", "/rfg", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("rgw"), 0, []byte("gone"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rgw") + " " + s.open(s.a, "rgr", "/rfg", pfRead, attrs{})
			r, err = s.a.pathOp(fxpRemove, s.p("/rfg"))
			out += " " + s.res(r, err) + " " + s.open(s.a, "rgw", "/rfg", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("rgw"), 0, []byte("another file"))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("rgr"), 0, 100)
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "rgw") + " " + s.closeH(s.a, "rgr")
		}},
		// A reader that followed the session's save keeps reading that
		// save's data, its last writes included, once a rename onto the
		// path takes it away, as a descriptor of the file the save's
		// O_TRUNC emptied does (TestSFTPRandom seed 7339: the save's
		// held-back write never reached the reader).
		{"open /rfr READ, save /rfr, write at 20, posix-rename /rfn onto /rfr, read at 4 and at 18", func(s *sftpSide) string {
			out := s.writeFile("/rfr", []byte("old content")) + " " + s.writeFile("/rfn", []byte("renamed"))
			out += " " + s.open(s.a, "rrr", "/rfr", pfRead, attrs{})
			out += " " + s.open(s.a, "rrw", "/rfr", pfWrite|pfTrunc, attrs{})
			r, err := s.a.write(s.h("rrw"), 20, []byte("Q"))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rfn")), s.p("/rfr")))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("rrr"), 4, 3)
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("rrr"), 18, 10)
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rrw") + " " + s.closeH(s.a, "rrr")
			return out + " " + s.readAll(s.a, "/rfr")
		}},
		// A reader whose file the session renames, or a directory above
		// it, reads the session's later save of the new name, as a
		// descriptor stays with its file and the save's O_TRUNC empties
		// it (TestSSHFSRandom seed 3623); a save of the old name is
		// another file.
		{"open /rkd/f READ, rename it to /rkf, save /rkd/f, read; rename /rkf to /rkx/f, /rkx to /rky, save /rky/f, read", func(s *sftpSide) string {
			out := s.with(func() string { return "" }, "/rkd/", "/rkx/", "/rkd/f=old content")
			out += s.open(s.a, "rkr", "/rkd/f", pfRead, attrs{})
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rkd/f")), s.p("/rkf")))
			out += " " + s.res(r, err)
			out += " " + s.writeFile("/rkd/f", []byte("another file"))
			r, err = s.a.read(s.h("rkr"), 0, 100)
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rkf")), s.p("/rkx/f")))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rkx")), s.p("/rky")))
			out += " " + s.res(r, err)
			out += " " + s.open(s.a, "rkw", "/rky/f", pfWrite|pfTrunc, attrs{})
			r, err = s.a.write(s.h("rkw"), 0, []byte("E"))
			out += " " + s.res(r, err)
			r, err = s.a.read(s.h("rkr"), 0, 100)
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rkw")
			r, err = s.a.read(s.h("rkr"), 0, 100)
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "rkr")
		}},
		// A reader that followed a save, closed since, reads what the
		// session writes at its new name after a rename, as a plain
		// reader does (a review: it caught up with the closed save's old
		// name); so does one whose save was renamed while open.
		{"open /zc READ, rename it to /zd, write /zd in place, read; the same after following a save of /za, closed, and of /ze, renamed open", func(s *sftpSide) string {
			rdAt := func(h string, off uint64, n uint32) string {
				r, err := s.a.read(s.h(h), off, n)
				return s.res(r, err)
			}
			wr := func(h string, off uint64, d string) string {
				r, err := s.a.write(s.h(h), off, []byte(d))
				return s.res(r, err)
			}
			prn := func(from, to string) string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p(from)), s.p(to)))
				return s.res(r, err)
			}
			var out string
			for _, c := range []struct{ name, renamedOpen, final string }{{"/zc", "", "/zd"}, {"/za", "", "/zb"}, {"/ze", "/zf", "/zg"}} {
				out += s.writeFile(c.name, []byte("old content"))
				out += " " + s.open(s.a, "zr", c.name, pfRead, attrs{}) + " " + rdAt("zr", 0, 100)
				if c.name != "/zc" {
					out += " " + s.open(s.a, "zs", c.name, pfWrite|pfTrunc, attrs{}) + " " + wr("zs", 0, "new content")
					if c.renamedOpen != "" {
						out += " " + prn(c.name, c.renamedOpen)
					}
					out += " " + s.closeH(s.a, "zs") + " " + rdAt("zr", 0, 100)
					if c.renamedOpen != "" {
						out += " " + prn(c.renamedOpen, c.final)
					} else {
						out += " " + prn(c.name, c.final)
					}
				} else {
					out += " " + prn(c.name, c.final)
				}
				out += " " + s.open(s.a, "zw", c.final, pfWrite, attrs{}) + " " + rdAt("zr", 0, 3) + " " + wr("zw", 4, "XYZ")
				out += " " + rdAt("zr", 4, 7) + " " + s.closeH(s.a, "zw") + " " + s.closeH(s.a, "zr") + ";"
			}
			return out
		}},
		// A save of a file that the session writes in place through
		// another name (a symbolic link, a hard link) truncates that
		// file, and both handles write it, as sftp-server's descriptors
		// share the inode its O_TRUNC emptied: the handle's writes were
		// lost under the save's commit (TestSFTPRandom seed 3605).
		{"write /ipa in place through the link /ipl and the hard link /iph, save /ipa meanwhile", func(s *sftpSide) string {
			out := s.open(s.a, "ipw", "/ipa", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("ipw"), 0, []byte("the old content"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "ipw")
			r, err = s.a.symlink("ipa", s.p("/ipl"))
			out += " " + s.res(r, err)
			r, err = s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/ipa")), s.p("/iph")))
			out += " " + s.res(r, err)
			for _, via := range []string{"/ipl", "/iph"} {
				out += " " + s.open(s.a, "ipi", via, pfWrite, attrs{})
				out += " " + s.open(s.a, "ips", "/ipa", pfWrite|pfTrunc, attrs{})
				r, err = s.a.write(s.h("ipi"), 6, []byte("kept"))
				out += " " + s.res(r, err)
				r, err = s.a.write(s.h("ips"), 0, []byte(via))
				out += " " + s.res(r, err) + " " + s.closeH(s.a, "ips") + " " + s.closeH(s.a, "ipi")
				out += " " + s.readAll(s.a, "/ipa") + " " + s.readAll(s.a, "/iph") + ";"
			}
			return out
		}},
		// The agent's own reads of a directory (the sweep of stale temp
		// files before an upload, the check of the links a move carries
		// up) leave its atime, as sftp-server reads no directory unasked
		// (TestSFTPRandom seed 3119).
		{"mkdir /nat/sub, setstat times, posix-rename to /natsub (shallower), stat", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/nat"), attrs{})
			out := s.res(r, err)
			r, err = s.a.mkdir(s.p("/nat/sub"), attrs{})
			out += " " + s.res(r, err)
			r, err = s.a.setstat(s.p("/nat/sub"), times(tAtime, tMtime))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/nat/sub")), s.p("/natsub")))
			out += " " + s.res(r, err)
			r, err = s.a.pathOp(fxpStat, s.p("/natsub"))
			return out + " " + s.res(r, err)
		}},
		{"setstat /nat times, upload /nat/f, stat /nat", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/nat"), times(tAtime, tMtime))
			out := s.res(r, err)
			if r := s.open(s.a, "natf", "/nat/f", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return out + " " + r
			}
			out += " " + s.closeH(s.a, "natf")
			r, err = s.a.pathOp(fxpStat, s.p("/nat"))
			return out + " " + s.res(r, err)
		}},
		// An upload renamed over a link, or over a file of another mode,
		// while it is open: the name is that upload to the session from
		// then on, and a truncating open of it replaces the upload, not
		// what stood there (written through the link, it made a file at
		// the link's target: TestSSHFSRandom seed 1282).
		{"upload /rla, renamed over the link /rl -> rla while open, /rl opened WRITE|TRUNC and written", func(s *sftpSide) string {
			r, err := s.a.symlink("rla", s.p("/rl"))
			out := s.res(r, err) + " " + s.resaveRenamedUpload("/rla", "/rl")
			r, err = s.a.pathOp(fxpLstat, s.p("/rla"))
			out += " " + s.res(r, err)
			r, err = s.a.pathOp(fxpLstat, s.p("/rl"))
			return out + " " + s.res(r, err) + " " + s.readAll(s.a, "/rl")
		}},
		{"upload /rfa, renamed over /rfb (0600) while open, /rfb opened WRITE|TRUNC and written", func(s *sftpSide) string {
			out := s.open(s.a, "rfb", "/rfb", pfWrite|pfCreat|pfTrunc, perms(0o600)) + " " + s.closeH(s.a, "rfb")
			out += " " + s.resaveRenamedUpload("/rfa", "/rfb")
			r, err := s.a.pathOp(fxpLstat, s.p("/rfb"))
			return out + " " + s.res(r, err)
		}},
		{"open /rm CREAT|WRITE", func(s *sftpSide) string { return s.open(s.a, "rm", "/rm", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write /rm", func(s *sftpSide) string { r, err := s.a.write(s.h("rm"), 0, []byte("doomed")); return s.res(r, err) }},
		{"remove /rm during its upload", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/rm")); return s.res(r, err) }},
		{"write /rm after remove", func(s *sftpSide) string { r, err := s.a.write(s.h("rm"), 6, []byte("!")); return s.res(r, err) }},
		{"close /rm", func(s *sftpSide) string { return s.closeH(s.a, "rm") }},
		{"stat /rm after close", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/rm")); return s.res(r, err) }},
		{"open /mv1 CREAT|WRITE", func(s *sftpSide) string { return s.open(s.a, "mv", "/mv1", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write /mv1", func(s *sftpSide) string { r, err := s.a.write(s.h("mv"), 0, []byte("first ")); return s.res(r, err) }},
		{"rename /mv1 /mv2 during its upload", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/mv1"), s.p("/mv2"))
			return s.res(r, err)
		}},
		{"write after rename", func(s *sftpSide) string { r, err := s.a.write(s.h("mv"), 6, []byte("second")); return s.res(r, err) }},
		{"close renamed upload", func(s *sftpSide) string { return s.closeH(s.a, "mv") }},
		{"content /mv2", func(s *sftpSide) string { return s.readAll(s.a, "/mv2") }},
		{"stat /mv1", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/mv1")); return s.res(r, err) }},

		// setstat.
		{"setstat /d/f1 size 3 (truncate)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), size(3)); return s.res(r, err) }},
		{"content /d/f1 after truncate", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		{"setstat /d/f1 size 10 (extend)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), size(10)); return s.res(r, err) }},
		{"content /d/f1 after extend", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		{"setstat /d/f1 mode 04755", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), perms(0o4755)); return s.res(r, err) }},
		{"stat /d/f1 after mode 04755", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"setstat /d/f1 mode 0600", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), perms(0o600)); return s.res(r, err) }},
		{"setstat /d/f1 times apart", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/d/f1"), times(tAtime, tMtime))
			return s.res(r, err)
		}},
		{"stat /d/f1 after times", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"setstat /d777 mode 01777 (sticky)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777"), perms(0o1777)); return s.res(r, err) }},
		{"stat /d777 after 01777", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777")); return s.res(r, err) }},
		// The setgid bit: kept on a directory (new entries take its group,
		// new directories the bit), dropped from a file (deliberateDiffs).
		{"setstat /d777 mode 02775 (setgid, a directory)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777"), perms(0o2775)); return s.res(r, err) }},
		{"stat /d777 after 02775", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777")); return s.res(r, err) }},
		{"mkdir /d777/sg in the setgid directory", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/d777/sg"), attrs{}); return s.res(r, err) }},
		{"stat /d777/sg", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777/sg")); return s.res(r, err) }},
		{"setstat /d777/sg mode 0755 (setgid cleared)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777/sg"), perms(0o755)); return s.res(r, err) }},
		{"stat /d777/sg after 0755", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777/sg")); return s.res(r, err) }},
		{"rmdir /d777/sg", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/d777/sg")); return s.res(r, err) }},
		{"setstat /d777 mode 06777 (setuid and setgid, a directory)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777"), perms(0o6777)); return s.res(r, err) }},
		{"stat /d777 after 06777", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d777")); return s.res(r, err) }},
		{"setstat /d777 mode 01777 again", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777"), perms(0o1777)); return s.res(r, err) }},
		{"setstat /d/f1 mode 02755 (setgid, a file)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), perms(0o2755)); return s.res(r, err) }},
		{"stat /d/f1 after mode 02755", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"setstat /d/f1 mode 0600 again", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f1"), perms(0o600)); return s.res(r, err) }},
		{"setstat /d777 times", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d777"), times(tDir, tDir)); return s.res(r, err) }},
		{"setstat /missing mode", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/missing"), perms(0o600)); return s.res(r, err) }},
		// OPEN CREAT gives the sticky bit as SETSTAT does (sftp-server:
		// open(2) with the mode; setuid and setgid are upgate's to drop,
		// see deliberateDiffs), and an atomic upload keeps it through the
		// commit.
		{"open /sticky WRITE|CREAT mode 01755", func(s *sftpSide) string {
			return s.open(s.a, "st", "/sticky", pfWrite|pfCreat, perms(0o1755))
		}},
		{"fstat /sticky while open", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("st"))); return s.res(r, err) }},
		{"write and close /sticky", func(s *sftpSide) string {
			r, err := s.a.write(s.h("st"), 0, []byte("x"))
			return s.res(r, err) + " " + s.closeH(s.a, "st")
		}},
		{"stat /sticky after the close", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/sticky")); return s.res(r, err) }},
		{"remove /sticky", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/sticky")); return s.res(r, err) }},
		{"setstat /d/f2 own uid/gid", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpStat, s.p("/d/f2"))
			if err != nil || r.Type != fxpAttrs {
				return "stat: " + s.res(r, err)
			}
			r, err = s.a.setstat(s.p("/d/f2"), attrs{Flags: attrUIDGID, UID: r.Attrs.UID, GID: r.Attrs.GID})
			return s.res(r, err)
		}},
		{"setstat /d/f2 everything at once", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/d/f2"), attrs{Flags: attrSize | attrPerms | attrACModTim, Size: 4, Perms: 0o640, Atime: tAtime, Mtime: tMtime})
			return s.res(r, err)
		}},
		{"stat /d/f2 after setstat", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f2")); return s.res(r, err) }},
		// Every attribute of a SETSTAT is set, whatever became of the one
		// before (TestSFTPRandom's findings).
		{"setstat /d7 size 0 and mode 0700 (a directory: the size fails)", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/d7"), attrs{})
			out := s.res(r, err)
			r, err = s.a.setstat(s.p("/d7"), attrs{Flags: attrSize | attrPerms, Size: 0, Perms: 0o700})
			out += " " + s.res(r, err)
			r, err = s.a.pathOp(fxpStat, s.p("/d7"))
			out += " " + s.res(r, err)
			r, err = s.a.pathOp(fxpRmdir, s.p("/d7"))
			return out + " " + s.res(r, err)
		}},
		{"fsetstat size, mode and times on a READ handle (the size fails)", func(s *sftpSide) string {
			out := s.open(s.a, "ro", "/d/f2", pfRead, attrs{})
			r, err := s.a.fsetstat(s.h("ro"), attrs{Flags: attrSize | attrPerms | attrACModTim, Size: 1, Perms: 0o600, Atime: tAtime, Mtime: tMtime})
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("ro")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "ro")
		}},
		{"open /d/f2 WRITE for fsetstat", func(s *sftpSide) string { return s.open(s.a, "fs", "/d/f2", pfWrite, attrs{}) }},
		{"fsetstat size 1 (ftruncate)", func(s *sftpSide) string { r, err := s.a.fsetstat(s.h("fs"), size(1)); return s.res(r, err) }},
		{"fsetstat mode 0604", func(s *sftpSide) string { r, err := s.a.fsetstat(s.h("fs"), perms(0o604)); return s.res(r, err) }},
		{"fstat after fsetstat", func(s *sftpSide) string { r, err := s.a.request(fxpFstat, str(nil, s.h("fs"))); return s.res(r, err) }},
		{"close fsetstat handle", func(s *sftpSide) string { return s.closeH(s.a, "fs") }},
		{"open /d READ (a directory), fsetstat mode 0700 and times, stat, mode back", func(s *sftpSide) string {
			out := s.open(s.a, "dh", "/d", pfRead, attrs{})
			r, err := s.a.fsetstat(s.h("dh"), attrs{Flags: attrPerms | attrACModTim, Perms: 0o700, Atime: tAtime, Mtime: tDir})
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "dh")
			r, err = s.a.pathOp(fxpStat, s.p("/d"))
			out += " " + s.res(r, err)
			r, err = s.a.setstat(s.p("/d"), perms(0o755))
			return out + " " + s.res(r, err)
		}},
		// A reader opened into the session's new upload, which is renamed
		// after a write it holds back: the reader's FSTAT comes after that
		// write, wherever the upload went (TestSFTPRandom seed 5856).
		{"upload /rir EXCL, a reader into it READ|TRUNC, write at 5, posix-rename /rir to /rir2, fstat the reader, close both", func(s *sftpSide) string {
			out := s.open(s.a, "rir", "/rir", pfWrite|pfCreat|pfExcl, attrs{}) + " " + s.open(s.a, "rirr", "/rir", pfRead|pfTrunc, attrs{})
			r, err := s.a.write(s.h("rir"), 5, []byte("C"))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rir")), s.p("/rir2")))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("rirr")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "rir") + " " + s.closeH(s.a, "rirr") + " " + s.readAll(s.a, "/rir2")
		}},
		// Two handles writing one file (one of them opened into the
		// session's upload of it, which holds its writes back), which a
		// rename onto its path takes away: they still write one
		// (unlinked) file, and an FSTAT through one comes after the
		// other's writes (TestSFTPRandom seed 6361: the View forgot they
		// were peers).
		{"new /drp READ|WRITE|CREAT, an APPEND handle into it, the first closed, a READ|WRITE handle, /drpa renamed onto it, a write through the APPEND one, fstat the other", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/drpa=other")
			out += " " + s.open(s.a, "drp1", "/drp", pfRead|pfWrite|pfCreat, attrs{}) + " " + s.open(s.a, "drp2", "/drp", pfWrite|pfAppend|pfCreat, attrs{})
			out += " " + s.closeH(s.a, "drp1") + " " + s.open(s.a, "drp0", "/drp", pfRead|pfWrite|pfCreat, attrs{})
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/drpa")), s.p("/drp")))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("drp2"), 0, []byte("Z5"))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("drp0")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "drp2") + " " + s.closeH(s.a, "drp0") + " " + s.readAll(s.a, "/drp")
		}},
		// The same with a reader in place of the READ|WRITE handle, one
		// that truncates at its open (READ|CREAT|TRUNC): the rename takes
		// the path from the appending handle, and the reader's FSTAT
		// still comes after that handle's write (TestSFTPRandom seed
		// 22647: the reader caught up only with the writers at its path).
		{"new /drr READ|WRITE|CREAT, an APPEND handle into it, the first closed, a READ|CREAT|TRUNC handle, /drra renamed onto it, a write through the APPEND one, fstat the reader", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/drra=other")
			out += " " + s.open(s.a, "drr1", "/drr", pfRead|pfWrite|pfCreat, attrs{}) + " " + s.open(s.a, "drr2", "/drr", pfWrite|pfAppend|pfCreat, attrs{})
			out += " " + s.closeH(s.a, "drr1") + " " + s.open(s.a, "drr0", "/drr", pfRead|pfCreat|pfTrunc, attrs{})
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/drra")), s.p("/drr")))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("drr2"), 1, []byte("L"))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("drr0")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "drr2") + " " + s.closeH(s.a, "drr0") + " " + s.readAll(s.a, "/drr")
		}},
		// The same after a REMOVE of the upload's path: the reader and the
		// upload's handle still share one (unlinked) file (seed 5174).
		{"upload /rrm, write at 1, a reader into it READ|APPEND, REMOVE /rrm, write at 0 through the upload's handle, fstat the reader, close both", func(s *sftpSide) string {
			out := s.open(s.a, "rrm", "/rrm", pfRead|pfWrite|pfCreat, attrs{})
			r, err := s.a.write(s.h("rrm"), 1, []byte("I"))
			out += " " + s.res(r, err) + " " + s.open(s.a, "rrmr", "/rrm", pfRead|pfAppend, attrs{})
			r, err = s.a.pathOp(fxpRemove, s.p("/rrm"))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("rrm"), 0, []byte("F31"))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("rrmr")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "rrm") + " " + s.closeH(s.a, "rrmr")
		}},
		// copy-data as sftp-server serves it (process_extended_copy_data):
		// one handle for both ends, or two handles of one path, FAILURE;
		// a read-only destination fails only once there is something to
		// write; a length the source ends before answers OK when it fits
		// one 64 KiB piece (the random differential with copy-data).
		{"copy-data: /cpa into itself, /cpa into a second handle of /cpa, empty /cpe into read-only /cpa, /cpa past its end, /cpa into read-only /cpe", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/cpa=copy source", "/cpe=")
			out += " " + s.open(s.a, "cpa", "/cpa", pfRead|pfWrite, attrs{}) + " " + s.open(s.a, "cpa2", "/cpa", pfRead|pfWrite, attrs{})
			out += " " + s.open(s.a, "cpe", "/cpe", pfRead, attrs{}) + " " + s.open(s.a, "cpr", "/cpa", pfRead, attrs{})
			cp := func(from string, off, n uint64, to string, off2 uint64) string {
				pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h(from)), off), n)
				pl = binary.BigEndian.AppendUint64(str(pl, s.h(to)), off2)
				r, err := s.a.extended("copy-data", pl)
				return s.res(r, err)
			}
			out += " " + cp("cpa", 0, 0, "cpa", 20) + " " + cp("cpa", 0, 4, "cpa2", 20) + " " + cp("cpe", 0, 0, "cpr", 0)
			out += " " + cp("cpa", 100, 5, "cpe", 0) + " " + cp("cpa", 0, 0, "cpe", 0)
			for _, h := range []string{"cpa", "cpa2", "cpe", "cpr"} {
				out += " " + s.closeH(s.a, h)
			}
			return out + " " + s.readAll(s.a, "/cpa") + " " + s.readAll(s.a, "/cpe")
		}},
		// Two handles of one file opened by two spellings of its path:
		// one path to upgate, whose request server cleans every path,
		// FAILURE as for one handle (whyCopyDataNames; a review).
		// A directory opened with OPEN READ: sftp-server's pread of it
		// fails (EISDIR) whatever its size, so that a copy to its end
		// answers FAILURE, one removed since its open (size 0) too
		// (TestSFTPRandom seed 23457: upgate's copy stopped at the size
		// before reading, and answered OK).
		{"copy-data to its end from a directory opened READ, before and after its rmdir", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/cdd/", "/cdt=target")
			out += " " + s.open(s.a, "cdd", "/cdd", pfRead, attrs{}) + " " + s.open(s.a, "cdt", "/cdt", pfRead|pfWrite, attrs{})
			cp := func() string {
				pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cdd")), 1), 0)
				pl = binary.BigEndian.AppendUint64(str(pl, s.h("cdt")), 0)
				r, err := s.a.extended("copy-data", pl)
				return s.res(r, err)
			}
			out += " " + cp()
			r, err := s.a.pathOp(fxpRmdir, s.p("/cdd"))
			out += " " + s.res(r, err) + " " + cp()
			return out + " " + s.closeH(s.a, "cdd") + " " + s.closeH(s.a, "cdt") + " " + s.readAll(s.a, "/cdt")
		}},
		// A copy to the end from at or past the source's end still reads
		// it once, as sftp-server's first pread(2): the source's atime
		// moves (relatime: the atime set is older than the mtime;
		// TestSFTPRandom seed 24638).
		{"copy-data to its end from past the end of /cpe (times set), then fstat it", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/cpe=abc", "/cpe2=")
			r, err := s.a.setstat(s.p("/cpe"), times(tAtime, tMtime))
			out += " " + s.res(r, err) + " " + s.open(s.a, "cpe", "/cpe", pfRead, attrs{}) + " " + s.open(s.a, "cpe2", "/cpe2", pfRead|pfWrite, attrs{})
			pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cpe")), 4), 0)
			pl = binary.BigEndian.AppendUint64(str(pl, s.h("cpe2")), 0)
			r, err = s.a.extended("copy-data", pl)
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("cpe")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "cpe") + " " + s.closeH(s.a, "cpe2")
		}},
		{"copy-data: /cps into a handle of /./cps (one file, two spellings)", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/cps=abcdef")
			out += " " + s.open(s.a, "cps", "/cps", pfRead, attrs{}) + " " + s.open(s.a, "cps2", "/./cps", pfWrite, attrs{})
			pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cps")), 0), 3)
			pl = binary.BigEndian.AppendUint64(str(pl, s.h("cps2")), 6)
			r, err := s.a.extended("copy-data", pl)
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "cps") + " " + s.closeH(s.a, "cps2") + " " + s.readAll(s.a, "/cps")
			r, err = s.a.pathOp(fxpRemove, s.p("/cps")) // the trees compare alike after it
			return out + " " + s.res(r, err)
		}},
		// sftp-server answers OK for a copy whose read fails when the
		// piece that failed was the last asked for (whyCopyDataOK).
		{"copy-data from a handle open only for writing, 2 bytes (its read fails)", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/cpw=written only", "/cpw2=")
			out += " " + s.open(s.a, "cpw", "/cpw", pfWrite, attrs{}) + " " + s.open(s.a, "cpw2", "/cpw2", pfRead|pfWrite, attrs{})
			pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cpw")), 0), 2)
			pl = binary.BigEndian.AppendUint64(str(pl, s.h("cpw2")), 0)
			r, err := s.a.extended("copy-data", pl)
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "cpw") + " " + s.closeH(s.a, "cpw2") + " " + s.readAll(s.a, "/cpw2")
		}},
		// A directory opened with OPEN and then renamed: its FSETSTAT and
		// FSTAT act on the directory the handle opened, as fstat(2),
		// fchmod(2) and futimens(2) of sftp-server's descriptor, not on
		// what its path names since (TestSFTPRandom seeds 3491, 3692).
		{"open /dmv READ|APPEND (a directory), rename it to /dmv2, fsetstat size, mode 0500 and times, fstat; /dmv made again, fsetstat mode 0700, fstat, close, stat both", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/dmv"), attrs{})
			out := s.res(r, err) + " " + s.open(s.a, "dmv", "/dmv", pfRead|pfAppend, attrs{})
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/dmv")), s.p("/dmv2")))
			out += " " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("dmv"), attrs{Flags: attrSize | attrPerms | attrACModTim, Size: 3, Perms: 0o500, Atime: tAtime, Mtime: tDir})
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("dmv")))
			out += " " + s.res(r, err)
			r, err = s.a.mkdir(s.p("/dmv"), attrs{})
			out += " " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("dmv"), perms(0o700))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("dmv")))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "dmv")
			for _, p := range []string{"/dmv", "/dmv2"} {
				r, err = s.a.pathOp(fxpStat, s.p(p))
				out += " " + s.res(r, err)
			}
			return out
		}},

		// A handle whose upload a second save of its path superseded
		// follows the new upload's data, whatever mode the session gave
		// the file since: 0200 here, which an open for reading and
		// writing would be refused (TestSFTPRandom seed 4519).
		{"upload /hm READ|WRITE, fsetstat mode 0200, a second save opened, fsetstat size 2 and a write through the first, both closed", func(s *sftpSide) string {
			out := s.open(s.a, "hm1", "/hm", pfRead|pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("hm1"), 0, []byte("first"))
			out += " " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("hm1"), perms(0o200))
			out += " " + s.res(r, err) + " " + s.open(s.a, "hm2", "/hm", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.fsetstat(s.h("hm1"), size(2))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("hm1"), 2, []byte("X"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "hm2") + " " + s.closeH(s.a, "hm1")
			r, err = s.a.setstat(s.p("/hm"), perms(0o644))
			return out + " " + s.res(r, err) + " " + s.readAll(s.a, "/hm")
		}},
		// A second truncating open of the session's own upload supersedes
		// it (View.supersede), whatever the new open is: with APPEND the
		// agent writes in place, and the first upload, committed after,
		// used to put back the empty file it made; without CREAT it used
		// to find no file (the first upload's is not committed yet); with
		// a mode, the file keeps the one it has, as open(2) of a file that
		// exists (TestSFTPRandom's findings).
		{"two uploads of /tu, the second READ|WRITE|APPEND|CREAT|TRUNC", func(s *sftpSide) string {
			out := s.open(s.a, "tu1", "/tu", pfWrite|pfCreat|pfTrunc, attrs{})
			out += " " + s.open(s.a, "tu2", "/tu", pfRead|pfWrite|pfAppend|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("tu2"), 0, []byte("NEW"))
			out += " " + s.res(r, err) + " " + s.readAll(s.a, "/tu")
			return out + " " + s.closeH(s.a, "tu2") + " " + s.closeH(s.a, "tu1") + " " + s.readAll(s.a, "/tu")
		}},
		{"a new file /tn, then opened WRITE|TRUNC without CREAT", func(s *sftpSide) string {
			out := s.open(s.a, "tn1", "/tn", pfWrite|pfCreat, attrs{})
			r, err := s.a.write(s.h("tn1"), 0, []byte("abc"))
			out += " " + s.res(r, err)
			out += " " + s.open(s.a, "tn2", "/tn", pfWrite|pfTrunc, attrs{})
			r, err = s.a.write(s.h("tn2"), 0, []byte("X"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tn2") + " " + s.closeH(s.a, "tn1")
			return out + " " + s.readAll(s.a, "/tn")
		}},
		{"a new file /tm mode 0644, then opened CREAT|TRUNC mode 0600", func(s *sftpSide) string {
			out := s.open(s.a, "tm1", "/tm", pfWrite|pfCreat|pfTrunc, perms(0o644))
			out += " " + s.open(s.a, "tm2", "/tm", pfWrite|pfCreat|pfTrunc, perms(0o600))
			r, err := s.a.write(s.h("tm2"), 0, []byte("M"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tm2") + " " + s.closeH(s.a, "tm1")
			r, err = s.a.pathOp(fxpStat, s.p("/tm"))
			return out + " " + s.res(r, err)
		}},
		// A truncating open of a file the session also writes in place
		// (an append) truncates that file: the handles share it, as
		// sftp-server's descriptors do. An atomic upload replaced it at
		// its close, and the append handle's later writes were lost
		// (TestSFTPRandom's seeds 82 and 113).
		{"/ta opened WRITE|APPEND|CREAT, then READ|WRITE|CREAT|TRUNC, an append through the first", func(s *sftpSide) string {
			out := s.open(s.a, "ta1", "/ta", pfWrite|pfAppend|pfCreat, attrs{})
			r, err := s.a.write(s.h("ta1"), 0, []byte("old"))
			out += " " + s.res(r, err)
			out += " " + s.open(s.a, "ta2", "/ta", pfRead|pfWrite|pfCreat|pfTrunc, attrs{})
			out += " " + s.readAll(s.a, "/ta")
			r, err = s.a.write(s.h("ta1"), 3, []byte("R4"))
			out += " " + s.res(r, err) + " " + s.readAll(s.a, "/ta")
			r, err = s.a.write(s.h("ta2"), 4, []byte("Z"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "ta2") + " " + s.closeH(s.a, "ta1")
			return out + " " + s.readAll(s.a, "/ta")
		}},
		{"/tb opened WRITE|APPEND|CREAT, then WRITE|TRUNC, renamed to /tc, an append through the first", func(s *sftpSide) string {
			out := s.open(s.a, "tb1", "/tb", pfWrite|pfAppend|pfCreat, attrs{})
			out += " " + s.open(s.a, "tb2", "/tb", pfWrite|pfTrunc, perms(0o600))
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/tb")), s.p("/tc")))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("tb1"), 0, []byte("H5"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tb2") + " " + s.closeH(s.a, "tb1")
			r, err = s.a.pathOp(fxpStat, s.p("/tc"))
			return out + " " + s.res(r, err) + " " + s.readAll(s.a, "/tc")
		}},
		// EXCL without CREAT means nothing (open(2) ignores O_EXCL without
		// O_CREAT): the truncating open replaces the file. The agent took
		// it for an exclusive create, and the CLOSE failed and kept the
		// old file (TestSFTPRandom's seeds 94 and 156).
		{"/ta opened READ|WRITE|TRUNC|EXCL (no CREAT), written, closed", func(s *sftpSide) string {
			out := s.open(s.a, "tx", "/ta", pfRead|pfWrite|pfTrunc|pfExcl, attrs{})
			r, err := s.a.write(s.h("tx"), 0, []byte("EX"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tx")
			return out + " " + s.readAll(s.a, "/ta")
		}},
		// Writes through two handles of the session's upload land in the
		// order they were answered: an append after a write at an
		// offset goes after it (TestSFTPRandom seed 192: the append
		// went first, the write held back for its ack window landed
		// after it, over it).
		{"/tw uploaded through one handle, appended through another, closed in turn", func(s *sftpSide) string {
			return s.with(func() string {
				out := s.open(s.a, "tw1", "/tw", pfWrite|pfCreat|pfTrunc, attrs{})
				out += " " + s.open(s.a, "tw2", "/tw", pfWrite|pfAppend, attrs{})
				r, err := s.a.write(s.h("tw1"), 3, []byte("A52"))
				out += " " + s.res(r, err)
				r, err = s.a.write(s.h("tw2"), 1, []byte("E56"))
				out += " " + s.res(r, err)
				// A stat counts the append (seed 941).
				r, err = s.a.pathOp(fxpStat, s.p("/tw"))
				out += " " + s.res(r, err) + " " + s.closeH(s.a, "tw2") + " " + s.closeH(s.a, "tw1") + " " + s.readAll(s.a, "/tw")
				r, err = s.a.pathOp(fxpRemove, s.p("/tw"))
				return out + " " + s.res(r, err)
			}, "/tw=alpha")
		}},
		// The session's upload in progress is a file to it: a rename
		// onto itself succeeds, a directory cannot take its place
		// (TestSFTPRandom seeds 231 and 298).
		{"/tx uploaded, posix-rename /tx onto itself, a directory renamed onto it", func(s *sftpSide) string {
			out := s.open(s.a, "tx1", "/tx", pfRead|pfWrite|pfCreat, attrs{})
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/tx")), s.p("/tx")))
			out += " " + s.res(r, err)
			r, err = s.a.mkdir(s.p("/txd"), attrs{})
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/txd")), s.p("/tx")))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "tx1")
			r, err = s.a.pathOp(fxpStat, s.p("/tx"))
			out += " " + s.res(r, err)
			for _, op := range []struct {
				t byte
				p string
			}{{fxpRemove, "/tx"}, {fxpRmdir, "/txd"}} {
				r, err = s.a.pathOp(op.t, s.p(op.p))
				out += " " + s.res(r, err)
			}
			return out
		}},
		// rename(2) asks both directories before the kinds: the
		// session's upload renamed onto a directory from a directory
		// made 0555 is EACCES, not EISDIR (TestSFTPRandom seed 22009).
		{"/ty/f uploaded, /ty 0555, posix-rename /ty/f onto the directory /tyd, close", func(s *sftpSide) string {
			return uploadRenamedFrom0555(s, "/ty", "/tyd", "/ty/", "/tyd/")
		}},
		// The upload renamed onto its own directory: rename(2) finds the
		// new name above the old (ENOTEMPTY, lock_rename's trap) before
		// it asks either directory's write bit.
		{"/tz/f uploaded, /tz 0555, posix-rename /tz/f onto /tz, close", func(s *sftpSide) string {
			return uploadRenamedFrom0555(s, "/tz", "/tz", "/tz/")
		}},
		// In a sticky directory another user's file is not the session's
		// to replace: rename(2) answers EPERM at the rename of the
		// session's upload onto it, not the close's commit (a review).
		{"/sk 1777 of root holding another user's file; /sk/mine uploaded, posix-rename onto it, close", func(s *sftpSide) string {
			d := filepath.Join(s.dir, "sk")
			if err := os.Mkdir(d, 0o755); err != nil {
				return "setup: " + err.Error()
			}
			theirs := filepath.Join(d, "theirs")
			for _, f := range []func() error{
				func() error { return os.Chmod(d, 0o777|os.ModeSticky) },
				func() error { return os.WriteFile(theirs, []byte("theirs"), 0o666) },
				func() error { return os.Chown(theirs, 4242, 4242) },
			} {
				if err := f(); err != nil {
					return "setup: " + err.Error()
				}
			}
			out := s.open(s.a, "sk1", "/sk/mine", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("sk1"), 0, []byte("mine"))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/sk/mine")), s.p("/sk/theirs")))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "sk1")
			out += " " + s.readAll(s.a, "/sk/theirs") + " " + s.readAll(s.a, "/sk/mine")
			if err := os.RemoveAll(d); err != nil {
				return out + " cleanup: " + err.Error()
			}
			return out
		}},
		{"remove /ta, /tc", func(s *sftpSide) string {
			out := ""
			for _, p := range []string{"/ta", "/tc"} {
				r, err := s.a.pathOp(fxpRemove, s.p(p))
				out += s.res(r, err) + " "
			}
			return out
		}},
		{"remove /tu, /tn, /tm", func(s *sftpSide) string {
			out := ""
			for _, p := range []string{"/tu", "/tn", "/tm"} {
				r, err := s.a.pathOp(fxpRemove, s.p(p))
				out += s.res(r, err) + " "
			}
			return out
		}},

		// Times at the Unix epoch are times like any other (put -p and
		// rsync of files dated 0, SOURCE_DATE_EPOCH=0): upgate's agent
		// protocol once took 0 for "leave unchanged" and kept the old
		// mtime.
		{"open /ep CREAT|WRITE", func(s *sftpSide) string { return s.open(s.a, "ep", "/ep", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"close /ep", func(s *sftpSide) string { return s.closeH(s.a, "ep") }},
		{"setstat /ep times(5, 0): mtime at the epoch", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/ep"), times(5, 0)); return s.res(r, err) }},
		{"stat /ep after times(5, 0)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/ep")); return s.res(r, err) }},
		{"mkdir /epd", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/epd"), attrs{}); return s.res(r, err) }},
		{"setstat /epd times(0, 0)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/epd"), times(0, 0)); return s.res(r, err) }},
		{"stat /epd after times(0, 0)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/epd")); return s.res(r, err) }},
		{"open /epu CREAT|TRUNC|WRITE", func(s *sftpSide) string { return s.open(s.a, "epu", "/epu", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write /epu", func(s *sftpSide) string {
			r, err := s.a.write(s.h("epu"), 0, []byte("dated 1970"))
			return s.res(r, err)
		}},
		{"fsetstat /epu times(0, 0) during upload", func(s *sftpSide) string {
			r, err := s.a.fsetstat(s.h("epu"), times(0, 0))
			return s.res(r, err)
		}},
		{"close /epu", func(s *sftpSide) string { return s.closeH(s.a, "epu") }},
		{"stat /epu after close", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/epu")); return s.res(r, err) }},

		// Symbolic links.
		{"symlink /ln -> d/f1", func(s *sftpSide) string { r, err := s.a.symlink("d/f1", s.p("/ln")); return s.res(r, err) }},
		{"readlink /ln", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/ln")); return s.res(r, err) }},
		{"lstat /ln", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/ln")); return s.res(r, err) }},
		{"stat /ln", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/ln")); return s.res(r, err) }},
		{"content via /ln", func(s *sftpSide) string { return s.readAll(s.a, "/ln") }},
		{"symlink /dang -> nowhere (dangling)", func(s *sftpSide) string { r, err := s.a.symlink("nowhere", s.p("/dang")); return s.res(r, err) }},
		{"stat /dang", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/dang")); return s.res(r, err) }},
		{"lstat /dang", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/dang")); return s.res(r, err) }},
		{"readlink /dang", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/dang")); return s.res(r, err) }},
		{"open /dang READ", func(s *sftpSide) string { return s.open(s.a, "dangr", "/dang", pfRead, attrs{}) }},
		{"symlink /loop -> loop (itself)", func(s *sftpSide) string { r, err := s.a.symlink("loop", s.p("/loop")); return s.res(r, err) }},
		{"symlink /toloop -> loop (into a cycle)", func(s *sftpSide) string { r, err := s.a.symlink("loop", s.p("/toloop")); return s.res(r, err) }},
		{"readlink /toloop", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/toloop")); return s.res(r, err) }},
		{"stat /toloop (a cycle)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/toloop")); return s.res(r, err) }},
		{"open /toloop READ", func(s *sftpSide) string { return s.open(s.a, "loopr", "/toloop", pfRead, attrs{}) }},
		{"symlink /dd -> d/../d/f1 (a .. after a name)", func(s *sftpSide) string {
			r, err := s.a.symlink("d/../d/f1", s.p("/dd"))
			out := s.res(r, err)
			r, err = s.a.pathOp(fxpRemove, s.p("/dd"))
			return out + " " + s.res(r, err)
		}},
		{"symlink /lk/up -> .., renamed to /lkup (where it climbs out), removed", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/lk"), attrs{})
			out := s.res(r, err)
			r, err = s.a.symlink("..", s.p("/lk/up"))
			out += " " + s.res(r, err)
			r, err = s.a.twoPaths(fxpRename, s.p("/lk/up"), s.p("/lkup"))
			out += " " + s.res(r, err)
			for _, p := range []string{"/lk/up", "/lkup"} {
				r, err = s.a.pathOp(fxpRemove, s.p(p))
				out += " " + s.res(r, err)
			}
			r, err = s.a.pathOp(fxpRmdir, s.p("/lk"))
			return out + " " + s.res(r, err)
		}},
		{"remove /loop, /toloop", func(s *sftpSide) string {
			var out []string
			for _, p := range []string{"/loop", "/toloop"} {
				r, err := s.a.pathOp(fxpRemove, s.p(p))
				out = append(out, s.res(r, err))
			}
			return strings.Join(out, "; ")
		}},
		{"symlink /lnd -> d (a directory)", func(s *sftpSide) string { r, err := s.a.symlink("d", s.p("/lnd")); return s.res(r, err) }},
		{"symlink /abs -> /d/f2 (absolute)", func(s *sftpSide) string { r, err := s.a.symlink(s.p("/d/f2"), s.p("/abs")); return s.res(r, err) }},
		{"readlink /abs", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/abs")); return s.res(r, err) }},
		{"stat /abs", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/abs")); return s.res(r, err) }},
		{"readdir /lnd (through the link)", func(s *sftpSide) string { return s.listing(s.a, "/lnd") }},
		{"stat /lnd", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/lnd")); return s.res(r, err) }},
		{"lstat /lnd", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/lnd")); return s.res(r, err) }},
		{"realpath /lnd/f1", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, s.p("/lnd/f1")); return s.res(r, err) }},
		{"realpath /d/f1/.. (a file before ..)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, s.p("/d/f1/..")); return s.res(r, err) }},
		{"realpath /d/f1/../x (a file before ..)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, s.p("/d/f1/../x")); return s.res(r, err) }},
		{"realpath /d/f1/x (a file before a name)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRealpath, s.p("/d/f1/x")); return s.res(r, err) }},
		{"symlink over existing name /ln", func(s *sftpSide) string { r, err := s.a.symlink("d/f2", s.p("/ln")); return s.res(r, err) }},
		{"readlink /d/f1 (not a link)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/d/f1")); return s.res(r, err) }},
		{"readlink /missing", func(s *sftpSide) string { r, err := s.a.pathOp(fxpReadlink, s.p("/missing")); return s.res(r, err) }},
		{"setstat /ln mode 0640 (follows the link)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/ln"), perms(0o640)); return s.res(r, err) }},
		{"stat /d/f1 after chmod through the link", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1")); return s.res(r, err) }},
		{"lsetstat@openssh.com /ln times", func(s *sftpSide) string {
			r, err := s.a.extended("lsetstat@openssh.com", append(str(nil, s.p("/ln")), times(tAtime, tDir).marshal()...))
			return s.res(r, err)
		}},
		{"lstat /ln after lsetstat", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/ln")); return s.res(r, err) }},
		// lsetstat as sftp-server serves it: a size refused before
		// anything (BAD_MESSAGE), a link's mode FAILURE with its times
		// set all the same, a file's mode and times set (the random
		// differential with lsetstat).
		{"lsetstat@openssh.com: size and mode of /lsf, mode and times of the link /lsl to it, mode and times of /lsf; lstat both", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/lsf=lsetstat")
			r, err := s.a.symlink("lsf", s.p("/lsl"))
			out += " " + s.res(r, err)
			for _, x := range []struct {
				p string
				a attrs
			}{
				{"/lsf", attrs{Flags: attrSize | attrPerms, Size: 2, Perms: 0o600}},
				{"/lsl", attrs{Flags: attrPerms | attrACModTim, Perms: 0o600, Atime: tAtime, Mtime: tDir}},
				{"/lsf", attrs{Flags: attrPerms | attrACModTim, Perms: 0o640, Atime: tAtime, Mtime: tMtime}},
			} {
				r, err := s.a.extended("lsetstat@openssh.com", append(str(nil, s.p(x.p)), x.a.marshal()...))
				out += " " + s.res(r, err)
			}
			for _, p := range []string{"/lsf", "/lsl"} {
				r, err = s.a.pathOp(fxpLstat, s.p(p))
				out += " " + s.res(r, err)
			}
			return out
		}},
		{"remove /lnd/ (link to a directory, with a slash)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/lnd")+"/"); return s.res(r, err) }},
		{"lstat /lnd after remove /lnd/", func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p("/lnd")); return s.res(r, err) }},
		{"remove /d/f2/ (a file, with a slash)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/d/f2")+"/"); return s.res(r, err) }},
		{"setstat /d/f2/ mode 0600 (a file, with a slash)", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/d/f2")+"/", perms(0o600)); return s.res(r, err) }},
		{"rename /d/f2/ /d/f2x (a file, with a slash)", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/d/f2")+"/", s.p("/d/f2x"))
			return s.res(r, err)
		}},
		{"posix-rename /lnd/ /lndx (a link, with a slash)", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/lnd")+"/"), s.p("/lndx")))
			return s.res(r, err)
		}},
		{"rename /d/f2 /d/f2new/ (a file to a name with a slash)", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/d/f2"), s.p("/d/f2new")+"/")
			return s.res(r, err)
		}},
		{"posix-rename /d/f2 /d/f2new/ (a file to a name with a slash)", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/d/f2")), s.p("/d/f2new")+"/"))
			return s.res(r, err)
		}},
		{"rename /lnd /lndnew/ (a link to a directory, to a name with a slash)", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/lnd"), s.p("/lndnew")+"/")
			return s.res(r, err)
		}},
		{"rename /rs /rs2/ (a directory to a name with a slash)", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rs"), s.p("/rs2")+"/")
				r2, err2 := s.a.pathOp(fxpLstat, s.p("/rs2"))
				return s.res(r, err) + " " + s.res(r2, err2)
			}, "/rs/")
		}},
		{"stat /d/f2 after the refusals", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f2")); return s.res(r, err) }},
		{"remove /lnd (link to a directory)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/lnd")); return s.res(r, err) }},
		{"stat /d after removing the link", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d")); return s.res(r, err) }},
		{"rename /dang /dang2 (a dangling link)", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/dang"), s.p("/dang2"))
			return s.res(r, err)
		}},

		// Remove, rmdir, rename errors.
		{"symlink /d/sub/absl -> /d/f1 (absolute, in a subdirectory)", func(s *sftpSide) string {
			r, err := s.a.symlink(s.p("/d/f1"), s.p("/d/sub/absl"))
			if err != nil || !r.ok() {
				return s.res(r, err)
			}
			r, err = s.a.pathOp(fxpReadlink, s.p("/d/sub/absl"))
			return s.res(r, err)
		}},
		{"lstat size of /ln (relative target d/f1)", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpLstat, s.p("/ln"))
			if err != nil || r.Type != fxpAttrs {
				return s.res(r, err)
			}
			return fmt.Sprintf("size=%d", r.Attrs.Size)
		}},
		{"rmdir /d (not empty)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/d")); return s.res(r, err) }},
		{"rmdir /missing", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/missing")); return s.res(r, err) }},
		{"rmdir /d/f1 (a file)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/d/f1")); return s.res(r, err) }},
		{"remove /d (a directory)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/d")); return s.res(r, err) }},
		{"remove /missing", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/missing")); return s.res(r, err) }},
		{"remove /missing/x (missing parent)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/missing/x")); return s.res(r, err) }},
		{"mkdir /empty, rmdir it", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/empty"), attrs{})
			if err != nil || !r.ok() {
				return "mkdir: " + s.res(r, err)
			}
			r, err = s.a.pathOp(fxpRmdir, s.p("/empty"))
			return s.res(r, err)
		}},
		{"rename over existing file", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/a1"), s.p("/rn/b1"))
				return s.res(r, err) + " / " + s.readAll(s.a, "/rn/b1")
			}, "/rn/", "/rn/a1=A1", "/rn/b1=B1")
		}},
		{"rename file over directory", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/a2"), s.p("/rn/dir2"))
				return s.res(r, err)
			}, "/rn/a2=A2", "/rn/dir2/")
		}},
		{"rename directory over file", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/dir3"), s.p("/rn/a3"))
				return s.res(r, err)
			}, "/rn/a3=A3", "/rn/dir3/")
		}},
		{"rename /missing /x", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/missing"), s.p("/x"))
			return s.res(r, err)
		}},
		// sftp-server's RENAME lstats the old name first, and stats a
		// directory's new name with links followed (TestSFTPRandom
		// seeds 8396, 8365).
		{"rename a missing file into a 0200 directory; a directory onto a link to itself, and onto a dangling link", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.setstat(s.p("/rq/w"), perms(0o200))
				out := s.res(r, err)
				r, err = s.a.twoPaths(fxpRename, s.p("/rq/missing"), s.p("/rq/w/x"))
				out += " " + s.res(r, err)
				r, err = s.a.setstat(s.p("/rq/w"), perms(0o755))
				out += " " + s.res(r, err)
				for _, l := range [][2]string{{"/rq/self", "self"}, {"/rq/nowhere", "missing"}} {
					r, err = s.a.symlink(l[1], s.p(l[0]))
					out += " " + s.res(r, err)
					r, err = s.a.twoPaths(fxpRename, s.p("/rq/dirl"), s.p(l[0]))
					out += " " + s.res(r, err)
				}
				// A directory onto the directory above it: ENOTEMPTY
				// before the agent's own refusal of a move up of one
				// it may not read (TestSFTPRandom seed 8846).
				r, err = s.a.setstat(s.p("/rq/w/c"), perms(0o200))
				out += " " + s.res(r, err)
				r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/rq/w/c")), s.p("/rq/w")))
				out += " " + s.res(r, err)
				r, err = s.a.setstat(s.p("/rq/w/c"), perms(0o755))
				out += " " + s.res(r, err)
				return out + " " + s.listing(s.a, "/rq")
			}, "/rq/", "/rq/w/", "/rq/w/c/", "/rq/dirl/")
		}},
		{"rename into missing dir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/a4"), s.p("/nodir/a4"))
				return s.res(r, err)
			}, "/rn/a4=A4")
		}},
		{"rename file to itself", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/a5"), s.p("/rn/a5"))
				return s.res(r, err) + " / " + s.readAll(s.a, "/rn/a5")
			}, "/rn/a5=A5")
		}},
		{"rename directory to a new name", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/dir6"), s.p("/rn/dir6b"))
				return s.res(r, err) + " / " + s.readAll(s.a, "/rn/dir6b/f")
			}, "/rn/dir6/", "/rn/dir6/f=F6")
		}},
		{"rename directory into its own subdir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/dir7"), s.p("/rn/dir7/sub/x"))
				return s.res(r, err)
			}, "/rn/dir7/", "/rn/dir7/sub/")
		}},
		{"rename directory over empty directory", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.twoPaths(fxpRename, s.p("/rn/dir8"), s.p("/rn/dir8b"))
				return s.res(r, err)
			}, "/rn/dir8/", "/rn/dir8b/")
		}},
		{"posix-rename over existing file", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/a1")), s.p("/pr/b1")))
				return s.res(r, err) + " / " + s.readAll(s.a, "/pr/b1")
			}, "/pr/", "/pr/a1=PA1", "/pr/b1=PB1")
		}},
		{"posix-rename file over non-empty dir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/a2")), s.p("/pr/dir2")))
				return s.res(r, err)
			}, "/pr/a2=PA2", "/pr/dir2/", "/pr/dir2/x=X")
		}},
		{"posix-rename file over empty dir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/a3")), s.p("/pr/dir3")))
				return s.res(r, err)
			}, "/pr/a3=PA3", "/pr/dir3/")
		}},
		{"posix-rename dir over empty dir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/dir4")), s.p("/pr/dir4b")))
				return s.res(r, err) + " / " + s.readAll(s.a, "/pr/dir4b/f")
			}, "/pr/dir4/", "/pr/dir4/f=F4", "/pr/dir4b/")
		}},
		{"posix-rename dir over non-empty dir", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/dir5")), s.p("/pr/dir5b")))
				return s.res(r, err)
			}, "/pr/dir5/", "/pr/dir5b/", "/pr/dir5b/x=X")
		}},
		{"posix-rename missing", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/pr/missing")), s.p("/pr/x")))
			return s.res(r, err)
		}},

		// Other extensions.
		{"hardlink@openssh.com /hl/a -> /hl/b", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/hl/a")), s.p("/hl/b")))
				return s.res(r, err) + " / " + s.readAll(s.a, "/hl/b")
			}, "/hl/", "/hl/a=HL")
		}},
		{"write through one hard link, read the other", func(s *sftpSide) string {
			if r := s.writeFile("/hl/a", []byte("HL2")); r != "OK" {
				return "write: " + r
			}
			return s.readAll(s.a, "/hl/b")
		}},
		{"hardlink over existing file", func(s *sftpSide) string {
			return s.with(func() string {
				r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/hl/a")), s.p("/hl/c")))
				return s.res(r, err)
			}, "/hl/c=C")
		}},
		{"hardlink of a directory", func(s *sftpSide) string {
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/hl")), s.p("/hl2")))
			return s.res(r, err)
		}},
		// hardlink@openssh.com of the session's own upload in progress.
		// The link, where made, is removed in the same step: the answer
		// is what differs.
		{"open /hu CREAT|TRUNC|WRITE", func(s *sftpSide) string { return s.open(s.a, "hu", "/hu", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write HU to /hu", func(s *sftpSide) string { r, err := s.a.write(s.h("hu"), 0, []byte("HU")); return s.res(r, err) }},
		{"hardlink /hu -> /hu2 during its upload", func(s *sftpSide) string {
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/hu")), s.p("/hu2")))
			s.a.pathOp(fxpRemove, s.p("/hu2")) //nolint:errcheck // only the link's answer is compared
			return s.res(r, err)
		}},
		// A file renamed onto the session's upload in progress, where the
		// disk still holds a hard link of that file under the upload's
		// name: rename(2) of two links of one inode does nothing, but to
		// the session the name is the upload, another file, so the old
		// name goes (TestSFTPRandom seed 20849: upgate left it).
		{"posix-rename /hlr/c onto the session's upload /hlr/a, where a was a hard link of c; readdir; close", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/hlr/", "/hlr/c=C")
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/hlr/c")), s.p("/hlr/a")))
			out += " " + s.res(r, err) + " " + s.open(s.a, "hlr", "/hlr/b", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("hlr"), 0, []byte("B"))
			out += " " + s.res(r, err)
			for _, mv := range [][2]string{{"/hlr/b", "/hlr/a"}, {"/hlr/c", "/hlr/a"}} {
				r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p(mv[0])), s.p(mv[1])))
				out += " " + s.res(r, err)
			}
			out += " " + s.listing(s.a, "/hlr") + " " + s.closeH(s.a, "hlr")
			return out + " " + s.listing(s.a, "/hlr") + " " + s.readAll(s.a, "/hlr/a")
		}},
		// link(2) looks the old name up, then the new one's directory,
		// then whether the new name exists, and only then refuses a
		// directory: the errors come in that order (TestSFTPRandom seeds
		// 8204, 8311, 8281, 8261), whatever the session uploads.
		{"hardlink a directory onto itself, into a missing directory; a missing file and one in a 0600 directory onto /hu, /hu onto a file", func(s *sftpSide) string {
			link := func(from, to string) string {
				r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p(from)), s.p(to)))
				return s.res(r, err)
			}
			out := s.with(func() string { return "" }, "/hlo/", "/hlo/f=F", "/hlx=X")
			out += link("/hlo", "/hlo") + " " + link("/hlo", "/nowhere/x") + " " + link("/nowhere", "/hlo")
			out += " " + link("/nowhere", "/hu") + " " + link("/hu", "/hlx") + " " + link("/hu", "/nowhere/x")
			r, err := s.a.setstat(s.p("/hlo"), perms(0o600))
			out += " " + s.res(r, err) + " " + link("/hlo/f", "/hu")
			r, err = s.a.setstat(s.p("/hlo"), perms(0o755))
			return out + " " + s.res(r, err) + " " + s.readAll(s.a, "/hlx")
		}},
		{"close /hu", func(s *sftpSide) string { return s.closeH(s.a, "hu") }},
		{"content /hu", func(s *sftpSide) string { return s.readAll(s.a, "/hu") }},

		// A second truncating upload of the same path supersedes the
		// first, whose handle follows it: its writes land in the second
		// upload's data, as sftp-server's descriptors share the file (it
		// used to refuse WRITE).
		{"open /sup CREAT|TRUNC|WRITE (first handle)", func(s *sftpSide) string { return s.open(s.a, "sup1", "/sup", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write first through the first handle", func(s *sftpSide) string { r, err := s.a.write(s.h("sup1"), 0, []byte("first")); return s.res(r, err) }},
		{"open /sup CREAT|TRUNC|WRITE (second handle)", func(s *sftpSide) string { return s.open(s.a, "sup2", "/sup", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write SECOND through the second handle", func(s *sftpSide) string { r, err := s.a.write(s.h("sup2"), 0, []byte("SECOND")); return s.res(r, err) }},
		{"write ZZ at 8 through the first handle", func(s *sftpSide) string { r, err := s.a.write(s.h("sup1"), 8, []byte("ZZ")); return s.res(r, err) }},
		{"close the second handle on /sup", func(s *sftpSide) string { return s.closeH(s.a, "sup2") }},
		{"close the first handle on /sup", func(s *sftpSide) string { return s.closeH(s.a, "sup1") }},
		{"content /sup after both handles closed", func(s *sftpSide) string { return s.readAll(s.a, "/sup") }},
		{"remove /sup", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/sup")); return s.res(r, err) }},
		// The same when the second open appends (APPEND|TRUNC writes in
		// place): the first handle follows the file it truncated (it
		// used to refuse WRITE: TestSFTPRandom, seed 1212).
		{"open /sup CREAT|TRUNC|WRITE (first handle, again)", func(s *sftpSide) string { return s.open(s.a, "sup1", "/sup", pfWrite|pfCreat|pfTrunc, attrs{}) }},
		{"write first through the first handle, again", func(s *sftpSide) string { r, err := s.a.write(s.h("sup1"), 0, []byte("first")); return s.res(r, err) }},
		{"open /sup READ|WRITE|APPEND|TRUNC (second handle)", func(s *sftpSide) string {
			return s.open(s.a, "sup2", "/sup", pfRead|pfWrite|pfAppend|pfTrunc, attrs{})
		}},
		{"write E at 1 through the first handle", func(s *sftpSide) string { r, err := s.a.write(s.h("sup1"), 1, []byte("E")); return s.res(r, err) }},
		{"append tail through the second handle", func(s *sftpSide) string { r, err := s.a.write(s.h("sup2"), 0, []byte("tail")); return s.res(r, err) }},
		{"close the first handle on /sup, again", func(s *sftpSide) string { return s.closeH(s.a, "sup1") }},
		{"close the second handle on /sup, again", func(s *sftpSide) string { return s.closeH(s.a, "sup2") }},
		{"content /sup after the append handle closed", func(s *sftpSide) string { return s.readAll(s.a, "/sup") }},
		{"remove /sup, again", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/sup")); return s.res(r, err) }},

		// A new file made mode 0555 by its open: open(2) of it again for
		// writing is refused, though it is the session's upload still in
		// progress (it used to start a new upload: TestSFTPRandom, seed
		// 1452); the first handle still writes it.
		{"open /ro CREAT|TRUNC|WRITE mode 0555", func(s *sftpSide) string { return s.open(s.a, "ro1", "/ro", pfWrite|pfCreat|pfTrunc, perms(0o555)) }},
		{"open /ro READ|WRITE|CREAT|TRUNC again (mode 0555)", func(s *sftpSide) string {
			return s.open(s.a, "ro2", "/ro", pfRead|pfWrite|pfCreat|pfTrunc, attrs{})
		}},
		{"open /ro WRITE|TRUNC again (mode 0555)", func(s *sftpSide) string { return s.open(s.a, "ro3", "/ro", pfWrite|pfTrunc, attrs{}) }},
		{"write ro through the first handle", func(s *sftpSide) string { r, err := s.a.write(s.h("ro1"), 0, []byte("ro")); return s.res(r, err) }},
		{"close the first handle on /ro", func(s *sftpSide) string { return s.closeH(s.a, "ro1") }},
		{"stat /ro", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/ro")); return s.res(r, err) }},
		{"content /ro", func(s *sftpSide) string { return s.readAll(s.a, "/ro") }},
		{"remove /ro", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/ro")); return s.res(r, err) }},

		// A handle opened without WRITE reads only, whatever else its
		// flags ask (CREAT, TRUNC): FSETSTAT of a size through it is
		// ftruncate(2) of a read-only descriptor, EINVAL (upgate truncated
		// the file: TestSFTPRandom, seed 1419); a mode and times go.
		{"open /rt READ|CREAT|TRUNC", func(s *sftpSide) string { return s.open(s.a, "rt", "/rt", pfRead|pfCreat|pfTrunc, attrs{}) }},
		{"fsetstat size 3 through the READ|CREAT|TRUNC handle", func(s *sftpSide) string {
			r, err := s.a.fsetstat(s.h("rt"), size(3))
			return s.res(r, err)
		}},
		{"fsetstat mode 0600 through it", func(s *sftpSide) string { r, err := s.a.fsetstat(s.h("rt"), perms(0o600)); return s.res(r, err) }},
		{"close /rt", func(s *sftpSide) string { return s.closeH(s.a, "rt") }},
		{"stat /rt", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/rt")); return s.res(r, err) }},
		{"open /d/f1 READ, fsetstat size 0 through it, close", func(s *sftpSide) string {
			if r := s.open(s.a, "rd", "/d/f1", pfRead, attrs{}); r != "HANDLE" {
				return "open: " + r
			}
			r, err := s.a.fsetstat(s.h("rd"), size(0))
			return s.res(r, err) + " " + s.closeH(s.a, "rd")
		}},
		{"content /d/f1 after it", func(s *sftpSide) string { return s.readAll(s.a, "/d/f1") }},
		{"remove /rt", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/rt")); return s.res(r, err) }},
		// Without WRITE the open is open(2) O_RDONLY with the other
		// flags: CREAT creates, TRUNC truncates, a directory opens, and
		// a file its owner may only read (0555) opens with APPEND
		// (upgate opened them all for writing: TestSFTPRandom, seeds
		// 1213, 1281, 1932).
		{"open /rc READ|CREAT (a new file), close, stat", func(s *sftpSide) string {
			r := s.open(s.a, "rc", "/rc", pfRead|pfCreat, attrs{})
			if r != "HANDLE" {
				return r
			}
			r += " " + s.closeH(s.a, "rc")
			st, err := s.a.pathOp(fxpStat, s.p("/rc"))
			return r + " " + s.res(st, err)
		}},
		{"write 12345 to /rc, open it READ|TRUNC, close, content", func(s *sftpSide) string {
			out := s.open(s.a, "rcw", "/rc", pfWrite, attrs{})
			w, err := s.a.write(s.h("rcw"), 0, []byte("12345"))
			out += " " + s.res(w, err) + " " + s.closeH(s.a, "rcw")
			if r := s.open(s.a, "rc", "/rc", pfRead|pfTrunc, attrs{}); r != "HANDLE" {
				return out + " " + r
			}
			return out + " " + s.closeH(s.a, "rc") + " " + s.readAll(s.a, "/rc")
		}},
		{"chmod /rc 0555, open it APPEND (no WRITE), close", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/rc"), perms(0o555))
			out := s.res(r, err)
			o := s.open(s.a, "rc", "/rc", pfAppend, attrs{})
			if o == "HANDLE" {
				o += " " + s.closeH(s.a, "rc")
			}
			return out + " " + o
		}},
		{"open /d READ|APPEND (a directory), fsetstat size 2 through it, close", func(s *sftpSide) string {
			r := s.open(s.a, "dh2", "/d", pfRead|pfAppend, attrs{})
			if r != "HANDLE" {
				return r
			}
			st, err := s.a.fsetstat(s.h("dh2"), size(2))
			return r + " " + s.res(st, err) + " " + s.closeH(s.a, "dh2")
		}},
		{"remove /rc", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/rc")); return s.res(r, err) }},
		{"open /d READ, fsetstat mode 0700 through it, fstat it, fsetstat 0755, close", func(s *sftpSide) string {
			r := s.open(s.a, "dh3", "/d", pfRead, attrs{})
			if r != "HANDLE" {
				return r
			}
			st, err := s.a.fsetstat(s.h("dh3"), perms(0o700))
			r += " " + s.res(st, err)
			st, err = s.a.request(fxpFstat, str(nil, s.h("dh3")))
			r += " " + s.res(st, err)
			st, err = s.a.fsetstat(s.h("dh3"), perms(0o755))
			return r + " " + s.res(st, err) + " " + s.closeH(s.a, "dh3")
		}},

		// SETSTAT of uid and gid (sftp-server: chown(2), EPERM for a user
		// who is not root).
		{"setstat /hu uid/gid 4242", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/hu"), attrs{Flags: attrUIDGID, UID: 4242, GID: 4242})
			return s.res(r, err)
		}},
		{"remove /hu", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/hu")); return s.res(r, err) }},
		{"copy-data /hl/c -> /hl/copy", func(s *sftpSide) string {
			if r := s.open(s.a, "cpsrc", "/hl/c", pfRead, attrs{}); r != "HANDLE" {
				return "open src: " + r
			}
			if r := s.open(s.a, "cpdst", "/hl/copy", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return "open dst: " + r
			}
			p := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cpsrc")), 0), 0)
			p = binary.BigEndian.AppendUint64(str(p, s.h("cpdst")), 0)
			r, err := s.a.extended("copy-data", p)
			res := s.res(r, err)
			s.closeH(s.a, "cpsrc")
			s.closeH(s.a, "cpdst")
			return res + " / " + s.readAll(s.a, "/hl/copy")
		}},
		{"home-directory", func(s *sftpSide) string {
			r, err := s.a.extended("home-directory", str(nil, s.user))
			return s.res(r, err)
		}},
		{"statvfs@openssh.com /", func(s *sftpSide) string {
			r, err := s.a.extended("statvfs@openssh.com", str(nil, s.p("/")))
			return s.statvfs(r, err)
		}},
		{"statvfs@openssh.com /missing", func(s *sftpSide) string {
			r, err := s.a.extended("statvfs@openssh.com", str(nil, s.p("/missing")))
			return s.statvfs(r, err)
		}},
		{"limits@openssh.com", func(s *sftpSide) string {
			r, err := s.a.extended("limits@openssh.com", nil)
			return s.res(r, err)
		}},
		{"expand-path@openssh.com ~/d", func(s *sftpSide) string {
			r, err := s.a.extended("expand-path@openssh.com", str(nil, "~/d"))
			return s.res(r, err)
		}},
		{"unknown extension", func(s *sftpSide) string { r, err := s.a.extended("nonsense@example.com", nil); return s.res(r, err) }},

		// Directories.
		{"opendir /d/f1 (a file)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpOpendir, s.p("/d/f1")); return s.res(r, err) }},
		{"opendir /missing", func(s *sftpSide) string { r, err := s.a.pathOp(fxpOpendir, s.p("/missing")); return s.res(r, err) }},
		{"readdir /d", func(s *sftpSide) string { return s.listing(s.a, "/d") }},
		{"readdir / lists . and ..", func(s *sftpSide) string {
			es, r, err := s.a.readdirAll(s.p("/"))
			if err != nil || !r.ok() {
				return s.res(r, err)
			}
			var l []string
			for _, e := range es {
				if e.Name == "." || e.Name == ".." {
					l = append(l, fmt.Sprintf("%q{%s %s}", e.Name, fmtAttrs(e.Attrs), longMode(e)))
				}
			}
			return fmt.Sprint(l)
		}},
		{"readdir /", func(s *sftpSide) string { return s.listing(s.a, "/") }},
		// ls -l's date column (OpenSSH's ls_file): "%b %e %H:%M" for an
		// mtime in the half year before now, "%b %e  %Y" for one older or
		// in the future; the day is padded with a space. Times near now
		// are whole days, so that both servers' runs see the same.
		{"readdir /lt: longname dates", func(s *sftpSide) string {
			day := time.Now().Truncate(24 * time.Hour)
			mtimes := []struct {
				name  string
				mtime int64
			}{
				{"2033", 2000000000}, // May 18 2033, in the future
				{"2004", tMtime},     // Nov  9 2004, a one-digit day
				{"in-two-days", day.AddDate(0, 0, 2).Unix()},
				{"30-days-ago", day.AddDate(0, 0, -30).Unix()},
				{"200-days-ago", day.AddDate(0, 0, -200).Unix()},
			}
			if r, err := s.a.mkdir(s.p("/lt"), attrs{}); err != nil || !r.ok() {
				return "mkdir: " + s.res(r, err)
			}
			for _, m := range mtimes {
				if r := s.writeFile("/lt/"+m.name, []byte("x")); r != "OK" {
					return m.name + ": " + r
				}
				if r, err := s.a.setstat(s.p("/lt/"+m.name), times(uint32(m.mtime), uint32(m.mtime))); err != nil || !r.ok() {
					return m.name + ": setstat: " + s.res(r, err)
				}
			}
			return s.listing(s.a, "/lt")
		}},

		// Names.
		{"mkdir /names", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/names"), attrs{}); return s.res(r, err) }},
		{"create names with spaces, unicode, invalid UTF-8, quotes", func(s *sftpSide) string {
			var l []string
			for i, n := range namesOK {
				l = append(l, fmt.Sprintf("%q:%s", n, s.writeFile("/names/"+n, fmt.Appendf(nil, "name %d\n", i))))
			}
			return strings.Join(l, " ")
		}},
		{"create 255-byte name", func(s *sftpSide) string { return s.writeFile("/names/"+long255, []byte("long")) }},
		{"create 256-byte name", func(s *sftpSide) string { return s.writeFile("/names/"+long256, []byte("too long")) }},
		{"stat 255-byte name", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/names/"+long255)); return s.res(r, err) }},
		{"mkdir name with \\x01", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/names/ctl\x01dir"), attrs{}); return s.res(r, err) }},
		{"create name with DEL", func(s *sftpSide) string { return s.writeFile("/names/del\x7fx", []byte("del")) }},
		{"create name with newline", func(s *sftpSide) string { return s.writeFile("/names/new\nline", []byte("nl")) }},
		{"stat invalid UTF-8 name", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpStat, s.p("/names/bad\xff\xfe.txt"))
			return s.res(r, err)
		}},
		{"rename invalid UTF-8 name", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/names/bad\xff\xfe.txt"), s.p("/names/still\xffbad"))
			return s.res(r, err)
		}},
		{"readdir /names", func(s *sftpSide) string { return s.listing(s.a, "/names") }},
		{"readdir /names: control characters", func(s *sftpSide) string {
			es, r, err := s.a.readdirAll(s.p("/names"))
			if err != nil || !r.ok() {
				return s.res(r, err)
			}
			var l []string
			for _, e := range es {
				if hasCtl(e.Name) {
					l = append(l, fmt.Sprintf("%q", e.Name))
				}
			}
			return fmt.Sprint(l)
		}},
		{"stat path with trailing slash /d/f1/", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/f1/")); return s.res(r, err) }},
		{"stat /d/./sub/..", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("/d/./sub/..")); return s.res(r, err) }},
		{"stat relative d/f1", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, "d/f1"); return s.res(r, err) }},
		{"stat //d//f1 (double slashes)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p("//d//f1")); return s.res(r, err) }},

		// pkg/sftp's client, as programs use it.
		{"pc: Create+Write 1 MiB (concurrent writes)", func(s *sftpSide) string {
			f, err := s.pc.Create(s.p("/big.bin"))
			if err != nil {
				return pcErr(err)
			}
			_, werr := f.ReadFrom(bytes.NewReader(big))
			return pcErr(errors.Join(werr, f.Close()))
		}},
		{"pc: read /big.bin back", func(s *sftpSide) string {
			f, err := s.pc.Open(s.p("/big.bin"))
			if err != nil {
				return pcErr(err)
			}
			defer f.Close()
			var buf bytes.Buffer
			if _, err := f.WriteTo(&buf); err != nil {
				return pcErr(err)
			}
			return fmt.Sprintf("%d bytes %q", buf.Len(), trunc(buf.Bytes()))
		}},
		{"pc: OpenFile O_WRONLY|O_APPEND, write", func(s *sftpSide) string {
			f, err := s.pc.OpenFile(s.p("/big.bin"), os.O_WRONLY|os.O_APPEND)
			if err != nil {
				return pcErr(err)
			}
			_, werr := f.Write([]byte("appended"))
			return pcErr(errors.Join(werr, f.Close()))
		}},
		{"pc: Stat /big.bin", func(s *sftpSide) string { return pcInfo(s.pc.Stat(s.p("/big.bin"))) }},
		{"pc: Truncate /big.bin 1000", func(s *sftpSide) string { return pcErr(s.pc.Truncate(s.p("/big.bin"), 1000)) }},
		{"pc: Chtimes /big.bin", func(s *sftpSide) string {
			return pcErr(s.pc.Chtimes(s.p("/big.bin"), time.Unix(tAtime, 0), time.Unix(tMtime, 0)))
		}},
		{"pc: Chmod /big.bin 0444", func(s *sftpSide) string { return pcErr(s.pc.Chmod(s.p("/big.bin"), 0o444)) }},
		{"pc: Lstat /big.bin", func(s *sftpSide) string { return pcInfo(s.pc.Lstat(s.p("/big.bin"))) }},
		{"pc: MkdirAll /deep/a/b/c", func(s *sftpSide) string { return pcErr(s.pc.MkdirAll(s.p("/deep/a/b/c"))) }},
		{"pc: MkdirAll over a file", func(s *sftpSide) string { return pcErr(s.pc.MkdirAll(s.p("/big.bin/x"))) }},
		{"pc: ReadDir /", func(s *sftpSide) string {
			fis, err := s.pc.ReadDir(s.p("/"))
			if err != nil {
				return pcErr(err)
			}
			var l []string
			for _, fi := range fis {
				l = append(l, pcInfo(fi, nil))
			}
			sort.Strings(l)
			return strings.Join(l, "; ")
		}},
		{"pc: ReadDir /d/f1 (a file)", func(s *sftpSide) string { _, err := s.pc.ReadDir(s.p("/d/f1")); return pcErr(err) }},
		{"pc: Walk /deep", func(s *sftpSide) string {
			w := s.pc.Walk(s.p("/deep"))
			var l []string
			for i := 0; i < 1000 && w.Step(); i++ {
				if w.Err() != nil {
					l = append(l, pcErr(w.Err()))
					continue
				}
				l = append(l, s.unp(w.Path()))
			}
			return strings.Join(l, " ")
		}},
		{"pc: Glob /d/f*", func(s *sftpSide) string {
			m, err := s.pc.Glob(s.p("/d/f*"))
			if err != nil {
				return pcErr(err)
			}
			for i := range m {
				m[i] = s.unp(m[i])
			}
			sort.Strings(m)
			return strings.Join(m, " ")
		}},
		{"pc: Remove /deep (not empty)", func(s *sftpSide) string { return pcErr(s.pc.Remove(s.p("/deep"))) }},
		{"pc: RemoveAll /deep", func(s *sftpSide) string { return pcErr(s.pc.RemoveAll(s.p("/deep"))) }},
		{"pc: Link /big.bin /big.hard", func(s *sftpSide) string { return pcErr(s.pc.Link(s.p("/big.bin"), s.p("/big.hard"))) }},
		{"pc: PosixRename /big.bin /big2.bin", func(s *sftpSide) string { return pcErr(s.pc.PosixRename(s.p("/big.bin"), s.p("/big2.bin"))) }},
		{"pc: Rename /sparse /sparse2", func(s *sftpSide) string { return pcErr(s.pc.Rename(s.p("/sparse"), s.p("/sparse2"))) }},
		{"pc: Getwd", func(s *sftpSide) string { wd, err := s.pc.Getwd(); return s.unp(wd) + " " + pcErr(err) }},
		{"pc: RealPath ..", func(s *sftpSide) string { p, err := s.pc.RealPath(s.p("/d/..")); return s.unp(p) + " " + pcErr(err) }},
		{"pc: ReadLink /abs", func(s *sftpSide) string { p, err := s.pc.ReadLink(s.p("/abs")); return s.unp(p) + " " + pcErr(err) }},
		{"pc: Symlink /pcl -> big.bin", func(s *sftpSide) string { return pcErr(s.pc.Symlink("big.bin", s.p("/pcl"))) }},
		{"pc: StatVFS /", func(s *sftpSide) string {
			v, err := s.pc.StatVFS(s.p("/"))
			if err != nil {
				return pcErr(err)
			}
			return fmt.Sprintf("bsize=%d frsize=%d namemax=%d", v.Bsize, v.Frsize, v.Namemax)
		}},
	}
	steps = append(steps, sftpPermSteps()...)
	steps = append(steps, sftpStep{"raw: STAT ., then an OPEN cut short after its id, in one write, on a session of its own", func(s *sftpSide) string {
		c, err := newRawSFTP(s.dial())
		if err != nil {
			return "fresh session: " + err.Error()
		}
		defer c.Close()
		stat := str(u32(nil, 1), ".")
		cut := append(u32(nil, 2), 0, 0)
		b := append(u32(nil, uint32(1+len(stat))), fxpStat)
		b = append(b, stat...)
		b = append(append(u32(b, uint32(1+len(cut))), fxpOpen), cut...)
		if _, err := c.w.Write(b); err != nil {
			return "send: " + err.Error()
		}
		var out []string
		for range 4 {
			p, err := c.recv()
			if err != nil {
				if strings.HasPrefix(err.Error(), "connection closed") {
					err = errors.New("the session ended")
				}
				return strings.Join(append(out, err.Error()), "; ")
			}
			d := &decoder{b: p.data}
			a := fmt.Sprintf("type %d id %d", p.typ, d.u32())
			if p.typ == fxpStatus {
				a += " " + statusNames[d.u32()]
			}
			out = append(out, a)
		}
		return strings.Join(append(out, "the session goes on"), "; ")
	}})
	steps = append(steps, sftpStep{"exit-status of an sftp subsystem ended by the client's EOF, and by a request cut short", func(s *sftpSide) string {
		var out []string
		for _, tail := range [][]byte{nil, {0, 0, 0, 3, fxpStat, 0, 0}} {
			out = append(out, subsystemExit(s.dial(), tail))
		}
		return strings.Join(out, "; ")
	}})
	// Final listings.
	return append(steps,
		sftpStep{"readdir / at the end", func(s *sftpSide) string { return s.listing(s.a, "/") }},
		sftpStep{"readdir /d at the end", func(s *sftpSide) string { return s.listing(s.a, "/d") }},
	)
}

// with makes fixtures on session A, then runs fn. A fixture is "/dir/"
// (mkdir) or "/path=content" (a file); a fixture that fails to appear is
// the step's answer.
func (s *sftpSide) with(fn func() string, fixtures ...string) string {
	for _, f := range fixtures {
		if dir, ok := strings.CutSuffix(f, "/"); ok {
			if r, err := s.a.mkdir(s.p(dir), attrs{}); err != nil || !r.ok() {
				return "fixture " + f + ": " + s.res(r, err)
			}
			continue
		}
		path, content, _ := strings.Cut(f, "=")
		if r := s.writeFile(path, []byte(content)); r != "OK" {
			return "fixture " + f + ": " + r
		}
	}
	return fn()
}

// writeFile creates path (CREAT|TRUNC|WRITE), writes data and closes.
func (s *sftpSide) writeFile(path string, data []byte) string {
	r, err := s.a.open(s.p(path), pfWrite|pfCreat|pfTrunc, attrs{})
	if err != nil || r.Type != fxpHandle {
		return "open: " + s.res(r, err)
	}
	h := r.Handle
	r, err = s.a.write(h, 0, data)
	if err != nil || !r.ok() {
		s.a.close(h) //nolint:errcheck
		return "write: " + s.res(r, err)
	}
	r, err = s.a.close(h)
	return s.res(r, err)
}

// statvfs shows the fields of a statvfs@openssh.com answer that do not
// change while the test runs: block sizes, flags and the longest name.
func (s *sftpSide) statvfs(r reply, err error) string {
	if err != nil || r.Type != fxpExtendedReply {
		return s.res(r, err)
	}
	if len(r.Data) < 11*8 {
		return fmt.Sprintf("short statvfs reply: %d bytes", len(r.Data))
	}
	f := func(i int) uint64 { return binary.BigEndian.Uint64(r.Data[i*8:]) }
	return fmt.Sprintf("bsize=%d frsize=%d flag=%d namemax=%d", f(0), f(1), f(9), f(10))
}

// subsystemExit opens an sftp subsystem channel on conn, sends INIT and
// tail, then EOF if tail is empty, and returns the exit-status the server
// sends before the channel's close (x/crypto/ssh's Session cannot wait
// for a subsystem's).
func subsystemExit(conn *ssh.Client, tail []byte) string {
	ch, reqs, err := conn.OpenChannel("session", nil)
	if err != nil {
		return "channel: " + err.Error()
	}
	defer ch.Close()
	if ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"})); !ok || err != nil {
		return fmt.Sprintf("subsystem: %v %v", ok, err)
	}
	if _, err := ch.Write(append(append(u32(nil, 5), fxpInit), append(u32(nil, 3), tail...)...)); err != nil {
		return "send: " + err.Error()
	}
	go func() { _, _ = io.Copy(io.Discard, ch) }()
	if len(tail) == 0 {
		// After VERSION: sftp-server takes the EOF of a read that
		// brought nothing else.
		time.Sleep(200 * time.Millisecond)
		_ = ch.CloseWrite()
	}
	status := "no exit-status"
	deadline := time.After(rawTimeout)
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				return status
			}
			if r.Type == "exit-status" && len(r.Payload) == 4 {
				status = fmt.Sprintf("exit-status %d", binary.BigEndian.Uint32(r.Payload))
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		case <-deadline:
			return status + ", no close"
		}
	}
}

// dialSFTP logs in to addr with cfg and opens raw SFTP sessions A and B
// (separate SSH connections) and a pkg/sftp client (a third).
func dialSFTP(t *testing.T, name, addr string, cfg *ssh.ClientConfig) *sftpSide {
	t.Helper()
	s := &sftpSide{name: name, handles: map[string]string{}}
	conn := func() *ssh.Client {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("%s: ssh: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	raw := func() *rawSFTP {
		r, err := newRawSFTP(conn())
		if err != nil {
			t.Fatalf("%s: sftp: %v", name, err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	s.a, s.b = raw(), raw()
	s.dial = conn
	pc, err := sftp.NewClient(conn(), sftp.MaxPacketUnchecked(1<<15))
	if err != nil {
		t.Fatalf("%s: pkg/sftp: %v", name, err)
	}
	t.Cleanup(func() { pc.Close() })
	s.pc = pc
	return s
}

// openSSHSide starts an OpenSSH server and connects to it.
func openSSHSide(t *testing.T) *sftpSide {
	t.Helper()
	srv := refserver.StartOpenSSH(t)
	s := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	s.user = srv.User
	s.prefix, s.dir = srv.Dir, srv.Dir
	return s
}

// upgateSFTPSide starts upgate (a real gateway, a real agent process
// that is not root, over real gRPC) with SFTP on loopback and connects
// to it as alice.
func upgateSFTPSide(t *testing.T) *sftpSide {
	t.Helper()
	s, u, _ := startUpgateSFTP(t)
	s.idle = func() { u.AgentIdle(t) }
	return s
}

// startUpgateSFTP starts upgate with SFTP on loopback and connects to it
// as alice: the side (without its idle check), the gateway, and alice's
// client configuration for more sessions.
func startUpgateSFTP(t *testing.T) (*sftpSide, *gwtest.Env, *ssh.ClientConfig) {
	t.Helper()
	u := startUpgate(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "hostkey-ed25519")}
	})
	cfg := &ssh.ClientConfig{
		User:            "alice",
		Auth:            []ssh.AuthMethod{ssh.Password(gwtest.Users["alice"])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	s := dialSFTP(t, "upgate", u.Srv.SFTPAddr.String(), cfg)
	s.user = "alice"
	s.prefix, s.dir = "", u.UserDir("alice")
	return s, u, cfg
}

// runSFTP runs the sequence on s, closes what it left open, and returns
// the answers and the resulting tree.
func runSFTP(t *testing.T, s *sftpSide) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	var out []stepResult
	for _, st := range sftpSteps() {
		out = append(out, stepResult{step: st.name, answer: st.run(s)})
	}
	for name := range s.handles {
		s.closeH(s.a, name)
	}
	if s.idle != nil {
		s.idle()
	}
	return out, snapshot(t, s.dir)
}

// TestSFTPDifferential runs the SFTP sequence against OpenSSH's
// sftp-server and against upgate and compares every answer and the
// resulting trees. Differences listed in deliberateDiffs are logged;
// any other fails the test.
func TestSFTPDifferential(t *testing.T) {
	ref := openSSHSide(t)
	ug := upgateSFTPSide(t)
	if n := len(sftpSteps()); n < 60 {
		t.Fatalf("only %d SFTP steps", n)
	}
	refRes, refTree := runSFTP(t, ref)
	ugRes, ugTree := runSFTP(t, ug)
	compareWithUpgate(t, "sftp", "openssh", refRes, refTree, ugRes, ugTree)
}

// TestSFTPDifferentialSelfCheck runs the sequence against two OpenSSH
// servers: the harness must see no difference at all, or it would
// report noise as upgate bugs.
func TestSFTPDifferentialSelfCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("harness self-check; skipped with -short")
	}
	one, two := openSSHSide(t), openSSHSide(t)
	r1, t1 := runSFTP(t, one)
	r2, t2 := runSFTP(t, two)
	compareSelf(t, "sftp", "openssh", r1, t1, r2, t2)
}
