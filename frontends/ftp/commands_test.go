package ftp_test

// The FTP command matrix: every command the clients in
// research/clients.md send, driven with jlaffaye/ftp where it has an API and
// over a raw control connection (ftpCtl) where it has none. Every test
// asserts what landed in the agent's directory (bytes, sha256, mtimes,
// modes), not only the reply codes, and every network read is bounded by a
// deadline so that a hang fails instead of stalling the run.

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	upftp "github.com/upgate/upgate/frontends/ftp"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// ioDeadline bounds every control and data connection a test opens: only
// a hang comes near it.
const ioDeadline = 2 * time.Minute

// ftpCtl is a raw FTP control connection, for the commands jlaffaye/ftp
// has no API for (FEAT, OPTS, SITE, HASH, STAT, PORT, ABOR, ...) and for
// interleaving commands with a transfer in progress.
type ftpCtl struct {
	t  testing.TB
	nc net.Conn
	tp *textproto.Conn
}

// ctlDial connects and reads the greeting.
func ctlDial(t testing.TB, addr string) *ftpCtl {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(ioDeadline))
	c := &ftpCtl{t: t, nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { c.tp.Close() })
	if code, msg := c.read(); code != 220 {
		t.Fatalf("greeting: %d %s", code, msg)
	}
	return c
}

// ctlLogin connects as user, logs in and selects binary transfers.
func ctlLogin(t testing.TB, e *env, user string) *ftpCtl {
	t.Helper()
	c := ctlDial(t, e.Addr)
	c.must(331, "USER %s", user)
	c.must(230, "PASS %s", gwtest.Users[user])
	c.must(200, "TYPE I")
	return c
}

func (c *ftpCtl) send(format string, args ...any) {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("send %q: %v", fmt.Sprintf(format, args...), err)
	}
}

// read reads one (possibly multi-line) reply. Continuation lines are
// joined with "\n".
func (c *ftpCtl) read() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// cmd sends a command and reads its reply.
func (c *ftpCtl) cmd(format string, args ...any) (int, string) {
	c.t.Helper()
	c.send(format, args...)
	return c.read()
}

// must sends a command and fails unless the reply has code.
func (c *ftpCtl) must(code int, format string, args ...any) string {
	c.t.Helper()
	got, msg := c.cmd(format, args...)
	if got != code {
		c.t.Fatalf("%s: got %d %q, want %d", fmt.Sprintf(format, args...), got, msg, code)
	}
	return msg
}

// expect reads a reply and fails unless it has code.
func (c *ftpCtl) expect(code int, what string) string {
	c.t.Helper()
	got, msg := c.read()
	if got != code {
		c.t.Fatalf("%s: got %d %q, want %d", what, got, msg, code)
	}
	return msg
}

var (
	pasvRe = regexp.MustCompile(`\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)`)
	epsvRe = regexp.MustCompile(`\(\|\|\|(\d+)\|\)`)
)

// pasvAddr sends PASV and returns the announced address.
func (c *ftpCtl) pasvAddr() (ip string, port int) {
	c.t.Helper()
	msg := c.must(227, "PASV")
	m := pasvRe.FindStringSubmatch(msg)
	if m == nil {
		c.t.Fatalf("PASV reply %q", msg)
	}
	p1, _ := strconv.Atoi(m[5])
	p2, _ := strconv.Atoi(m[6])
	return strings.Join(m[1:5], "."), p1*256 + p2
}

// epsvPort sends EPSV and returns the announced port.
func (c *ftpCtl) epsvPort() int {
	c.t.Helper()
	msg := c.must(229, "EPSV")
	m := epsvRe.FindStringSubmatch(msg)
	if m == nil {
		c.t.Fatalf("EPSV reply %q", msg)
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// pasv opens a passive data connection (PASV), dialled before the
// transfer command is sent, as clients do.
func (c *ftpCtl) pasv() net.Conn {
	c.t.Helper()
	ip, port := c.pasvAddr()
	return dataDial(c.t, net.JoinHostPort(ip, strconv.Itoa(port)))
}

// epsv opens a passive data connection with EPSV to the control host.
func (c *ftpCtl) epsv() net.Conn {
	c.t.Helper()
	host, _, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
	return dataDial(c.t, net.JoinHostPort(host, strconv.Itoa(c.epsvPort())))
}

func dataDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	dc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("data connection to %s: %v", addr, err)
	}
	_ = dc.SetDeadline(time.Now().Add(ioDeadline))
	t.Cleanup(func() { dc.Close() })
	return dc
}

// get runs a download command (RETR, LIST, NLST, MLSD) over PASV and
// returns its data.
func (c *ftpCtl) get(format string, args ...any) []byte {
	c.t.Helper()
	dc := c.pasv()
	c.must(150, format, args...)
	b, err := io.ReadAll(dc)
	dc.Close()
	if err != nil {
		c.t.Fatalf("%s: data: %v", fmt.Sprintf(format, args...), err)
	}
	c.expect(226, fmt.Sprintf(format, args...))
	return b
}

// put runs an upload command (STOR, APPE) over PASV.
func (c *ftpCtl) put(data []byte, format string, args ...any) {
	c.t.Helper()
	dc := c.pasv()
	c.must(150, format, args...)
	if _, err := dc.Write(data); err != nil {
		c.t.Fatalf("%s: data: %v", fmt.Sprintf(format, args...), err)
	}
	dc.Close()
	c.expect(226, fmt.Sprintf(format, args...))
}

// tryTransfer runs a transfer command that may fail, over PASV: it sends
// data on an upload, drains a download, and returns the final reply (the
// first one, if it is not 150).
func (c *ftpCtl) tryTransfer(data []byte, format string, args ...any) (int, string) {
	c.t.Helper()
	dc := c.pasv()
	defer dc.Close()
	code, msg := c.cmd(format, args...)
	if code != 150 {
		return code, msg
	}
	if verb := strings.ToUpper(fmt.Sprintf(format, args...)); strings.HasPrefix(verb, "STOR") || strings.HasPrefix(verb, "APPE") {
		_, _ = dc.Write(data)
	} else {
		_, _ = io.Copy(io.Discard, dc)
	}
	dc.Close()
	return c.read()
}

// lines splits a listing into its non-empty lines.
func lines(b []byte) []string {
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// dialCmd logs in with jlaffaye/ftp; every connection it opens (control
// and data) carries a deadline.
func dialCmd(t testing.TB, e *env, user string, opts ...ftp.DialOption) *ftp.ServerConn {
	t.Helper()
	df := func(network, addr string) (net.Conn, error) {
		nc, err := net.DialTimeout(network, addr, 10*time.Second)
		if err == nil {
			_ = nc.SetDeadline(time.Now().Add(ioDeadline))
		}
		return nc, err
	}
	c, err := ftp.Dial(e.Addr, append([]ftp.DialOption{ftp.DialWithDialFunc(df)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, gwtest.Users[user]); err != nil {
		c.Quit()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	return c
}

// putFile writes a file in user's directory of the agent with an exact mode.
func putFile(t testing.TB, e *env, user, name string, data []byte, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(e.UserDir(user), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// putDir creates a directory in user's directory with an exact mode.
func putDir(t testing.TB, e *env, user, name string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(e.UserDir(user), filepath.FromSlash(name))
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantFile fails unless the file at p holds exactly data.
func wantFile(t testing.TB, p string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s: %d bytes sha256 %x, want %d bytes sha256 %x", p, len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
}

// wantMode fails unless the file at p has permission bits mode.
func wantMode(t testing.TB, p string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), mode)
	}
}

// wantMtime fails unless the file at p has modification time mt.
func wantMtime(t testing.TB, p string, mt time.Time) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(mt) {
		t.Errorf("%s: mtime %v, want %v", p, fi.ModTime().UTC(), mt.UTC())
	}
}

// eventually polls cond for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func noise(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// replyCode is the FTP code of a jlaffaye/ftp error, 0 if it has none.
func replyCode(err error) (int, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, te.Msg
	}
	return 0, ""
}

func TestCmdFeatOptsClntHost(t *testing.T) {
	e := start(t, nil)
	c := ctlDial(t, e.Addr)

	msg := c.must(211, "FEAT")
	feats := map[string]string{} // keyword -> parameters
	var hashLine string
	ls := strings.Split(msg, "\n")
	for _, l := range ls[1 : len(ls)-1] {
		l = strings.TrimSpace(l)
		kw, rest, _ := strings.Cut(l, " ")
		feats[strings.ToUpper(kw)] = rest
		if strings.Contains(l, "SHA-256") {
			hashLine = l
		}
	}
	for _, want := range []string{"MLST", "MLSD", "MFMT", "UTF8", "EPSV", "EPRT", "SIZE", "MDTM", "REST", "XMD5", "XSHA256", "XCRC", "CLNT"} {
		if _, ok := feats[want]; !ok {
			t.Errorf("FEAT lacks %s:\n%s", want, msg)
		}
	}
	if feats["REST"] != "STREAM" {
		t.Errorf("FEAT REST %q, want REST STREAM", feats["REST"])
	}
	if _, ok := feats["AUTH"]; ok {
		t.Errorf("FEAT offers AUTH TLS without a certificate (lftp would upgrade and fail):\n%s", msg)
	}
	// RFC 3659 7.8: the MLST feature lists the facts, the ones in use
	// starred.
	if feats["MLST"] != "Type*;Size*;Modify*;UNIX.mode*;" {
		t.Errorf("FEAT MLST %q, want Type*;Size*;Modify*;UNIX.mode*;", feats["MLST"])
	}
	// The HASH feature (draft-bryan-ftpext-hash): keyword, algorithms, the
	// selected one starred.
	if feats["HASH"] != "CRC32;MD5;SHA-1;SHA-256*;SHA-512;" {
		t.Errorf("FEAT HASH %q (line %q), want CRC32;MD5;SHA-1;SHA-256*;SHA-512;", feats["HASH"], hashLine)
	}

	// What lftp sends before logging in.
	c.must(200, "OPTS UTF8 ON")
	c.must(200, "CLNT lftp 4.9.2")
	// HOST (RFC 7151) is not implemented by ftpserverlib and not an
	// "open" command: before login it is refused with 530, after login
	// with 502; neither ends the session.
	if code, msg := c.cmd("HOST 127.0.0.1"); code != 530 {
		t.Errorf("HOST before login: %d %s, want 530", code, msg)
	}
	c.must(331, "USER alice")
	c.must(230, "PASS %s", gwtest.Users["alice"])
	if code, msg := c.cmd("HOST 127.0.0.1"); code != 502 {
		t.Errorf("HOST after login: %d %s, want 502", code, msg)
	}
	c.must(200, "OPTS UTF8 ON")
	c.must(200, "CLNT x")
	c.must(200, "NOOP")
	c.must(257, "PWD")
}

// lsLine is one `ls -l` line: permissions, links, owner, group, size,
// date, name (which may contain spaces).
var lsLine = regexp.MustCompile(`^([-dl][rwxsStT-]{9})\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+([A-Z][a-z]{2}\s+\d{1,2}\s+(?:\d{2}:\d{2}|\d{4}))\s(.+)$`)

type lsEntry struct {
	perm string
	size int64
	date string
}

func parseLS(t testing.TB, b []byte) map[string]lsEntry {
	t.Helper()
	out := map[string]lsEntry{}
	for _, l := range lines(b) {
		m := lsLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("not an ls -l line: %q", l)
			continue
		}
		size, _ := strconv.ParseInt(m[5], 10, 64)
		out[m[7]] = lsEntry{perm: m[1], size: size, date: strings.Join(strings.Fields(m[6]), " ")}
	}
	return out
}

// parseMLSx parses MLSD lines (or the entry line of MLST) into name ->
// lower-cased facts.
func parseMLSx(t testing.TB, ls []string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, l := range ls {
		if strings.Contains(strings.ToLower(l), "type=cdir") || strings.Contains(strings.ToLower(l), "type=pdir") {
			t.Errorf("MLSx entry for the directory itself or its parent: %q", l)
		}
		facts, name, ok := strings.Cut(strings.TrimPrefix(l, " "), " ")
		if !ok {
			t.Errorf("MLSx line without a name: %q", l)
			continue
		}
		fm := map[string]string{}
		for f := range strings.SplitSeq(strings.TrimSuffix(facts, ";"), ";") {
			k, v, _ := strings.Cut(f, "=")
			fm[strings.ToLower(k)] = v
		}
		for _, want := range []string{"type", "size", "modify", "unix.mode"} {
			if _, ok := fm[want]; !ok {
				t.Errorf("MLSx line %q lacks the %s fact", l, want)
			}
		}
		out[name] = fm
	}
	return out
}

func TestCmdListings(t *testing.T) {
	e := start(t, nil)
	// A recent mtime shows hours and minutes in LIST; in UTC, as lftp
	// parses LIST dates as GMT.
	recent := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	a := putFile(t, e, "alice", "a.php", []byte("<?php echo 1;"), 0o644)
	if err := os.Chtimes(a, recent, recent); err != nil {
		t.Fatal(err)
	}
	putFile(t, e, "alice", ".env", []byte("SECRET=1\n"), 0o600)
	putFile(t, e, "alice", ".htaccess", []byte("Deny from all\n"), 0o644)
	putFile(t, e, "alice", "with space.txt", []byte("x"), 0o644)
	putDir(t, e, "alice", "sub", 0o755)
	putFile(t, e, "alice", "sub/inner.txt", []byte("inner"), 0o644)
	names := []string{".env", ".htaccess", "a.php", "sub", "with space.txt"}

	c := ctlLogin(t, e, "alice")
	for _, cmd := range []string{"LIST", "LIST -a", "LIST -al", "LIST -la", "LIST /", "LIST -al /"} {
		got := parseLS(t, c.get("%s", cmd))
		if keys := sortedKeys(got); !slices.Equal(keys, names) {
			t.Errorf("%s: names %q, want %q (dotfiles always, never . or ..)", cmd, keys, names)
		}
		if got["a.php"].perm != "-rw-r--r--" || got[".env"].perm != "-rw-------" || got["sub"].perm != "drwxr-xr-x" {
			t.Errorf("%s: permissions a.php %q .env %q sub %q", cmd, got["a.php"].perm, got[".env"].perm, got["sub"].perm)
		}
		if got["a.php"].size != int64(len("<?php echo 1;")) {
			t.Errorf("%s: a.php size %d", cmd, got["a.php"].size)
		}
		if want := strings.Join(strings.Fields(recent.UTC().Format("Jan _2 15:04")), " "); got["a.php"].date != want {
			t.Errorf("%s: a.php date %q, want %q (UTC)", cmd, got["a.php"].date, want)
		}
	}
	// LIST of one file lists that file.
	if got := parseLS(t, c.get("LIST a.php")); len(got) != 1 || got["a.php"].perm != "-rw-r--r--" {
		t.Errorf("LIST a.php: %v", got)
	}

	// NLST: bare names, relative to the working directory.
	if got := lines(c.get("NLST")); !slices.Equal(sorted(got), names) {
		t.Errorf("NLST: %q, want %q", got, names)
	}
	if got := lines(c.get("NLST sub")); !slices.Equal(got, []string{"sub/inner.txt"}) {
		t.Errorf("NLST sub: %q", got)
	}

	// MLSD: machine facts, never cdir/pdir (PhpStorm's "Invalid
	// descendent file name").
	ml := parseMLSx(t, lines(c.get("MLSD")))
	if keys := sortedKeys(ml); !slices.Equal(keys, names) {
		t.Errorf("MLSD names %q, want %q", keys, names)
	}
	if f := ml["a.php"]; f["type"] != "file" || f["size"] != "13" || f["modify"] != recent.UTC().Format("20060102150405") || f["unix.mode"] != "0644" {
		t.Errorf("MLSD a.php facts %v, want file, 13, %s, 0644", f, recent.UTC().Format("20060102150405"))
	}
	if f := ml[".env"]; f["unix.mode"] != "0600" {
		t.Errorf("MLSD .env facts %v, want UNIX.mode 0600", f)
	}
	if f := ml["sub"]; f["type"] != "dir" || f["unix.mode"] != "0755" {
		t.Errorf("MLSD sub facts %v, want dir, 0755", f)
	}
	if got := parseMLSx(t, lines(c.get("MLSD sub"))); len(got) != 1 || got["inner.txt"]["size"] != "5" {
		t.Errorf("MLSD sub: %v", got)
	}

	// MLST of a file: a 250 multi-line reply whose entry line starts with
	// a space.
	msg := c.must(250, "MLST a.php")
	var entry []string
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(l, " ") {
			entry = append(entry, l)
		}
	}
	// The entry names the absolute path (RFC 3659 7.7.2's example).
	if got := parseMLSx(t, entry); len(got) != 1 || got["/a.php"]["type"] != "file" || got["/a.php"]["modify"] != recent.UTC().Format("20060102150405") || got["/a.php"]["unix.mode"] != "0644" {
		t.Errorf("MLST a.php: %q", msg)
	}
	c.must(250, "CWD sub")
	if msg := c.must(250, "MLST inner.txt"); !strings.Contains(msg, "Type=file;Size=5;") || !strings.Contains(msg, "UNIX.mode=0644; /sub/inner.txt") {
		t.Errorf("MLST inner.txt in /sub: %q", msg)
	}
	c.must(250, "CWD /")

	// OPTS MLST narrows the facts for this session (RFC 3659 7.9).
	if msg := c.must(200, "OPTS MLST unix.mode;Type;"); msg != "MLST OPTS Type;UNIX.mode;" {
		t.Errorf("OPTS MLST: %q", msg)
	}
	if got := lines(c.get("MLSD sub")); len(got) != 1 || got[0] != "Type=file;UNIX.mode=0644; inner.txt" {
		t.Errorf("MLSD sub after OPTS MLST: %q", got)
	}
	c.must(200, "OPTS MLST Type;Size;Modify;UNIX.mode;")
	if code, msg := c.cmd("MLST nothere.php"); code != 550 {
		t.Errorf("MLST of a missing file: %d %s", code, msg)
	}

	// jlaffaye/ftp: List uses MLSD (FEAT offers MLST), forced LIST -a
	// parses ls -l, Walk descends.
	jc := dialCmd(t, e, "alice")
	ents, err := jc.List("/")
	if err != nil {
		t.Fatal(err)
	}
	var jn []string
	for _, en := range ents {
		jn = append(jn, en.Name)
		if en.Name == "a.php" && (en.Type != ftp.EntryTypeFile || en.Size != 13 || !en.Time.Equal(recent)) {
			t.Errorf("List a.php: %+v", en)
		}
		if en.Name == "sub" && en.Type != ftp.EntryTypeFolder {
			t.Errorf("List sub: %+v", en)
		}
	}
	if sort.Strings(jn); !slices.Equal(jn, names) {
		t.Errorf("List: %q", jn)
	}
	hc := dialCmd(t, e, "alice", ftp.DialWithForceListHidden(true))
	ents, err = hc.List("/")
	if err != nil {
		t.Fatal(err)
	}
	jn = jn[:0]
	for _, en := range ents {
		jn = append(jn, en.Name)
	}
	if sort.Strings(jn); !slices.Equal(jn, names) {
		t.Errorf("LIST -a through jlaffaye/ftp: %q", jn)
	}
	var walked []string
	w := jc.Walk("/")
	for w.Next() {
		walked = append(walked, w.Path())
	}
	if w.Err() != nil {
		t.Fatal(w.Err())
	}
	if !slices.Contains(walked, "/sub/inner.txt") || !slices.Contains(walked, "/.env") {
		t.Errorf("Walk: %q", walked)
	}
	e.AgentIdle(t)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestCmdMdtmSize(t *testing.T) {
	e := start(t, nil)
	data := noise(t, 1234)
	p := putFile(t, e, "alice", "t.php", data, 0o644)
	mt := time.Date(2021, 3, 4, 5, 6, 7, 500_000_000, time.UTC)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	putDir(t, e, "alice", "d", 0o755)

	c := ctlLogin(t, e, "alice")
	if got := c.must(213, "MDTM t.php"); got != "20210304050607" {
		t.Errorf("MDTM: %q, want 20210304050607 (UTC, to the second)", got)
	}
	if got := c.must(213, "SIZE t.php"); got != "1234" {
		t.Errorf("SIZE: %q", got)
	}
	if code, msg := c.cmd("MDTM nothere.php"); code != 550 {
		t.Errorf("MDTM of a missing file: %d %s", code, msg)
	}
	if code, msg := c.cmd("SIZE d"); code != 550 {
		t.Errorf("SIZE of a directory: %d %s", code, msg)
	}

	jc := dialCmd(t, e, "alice")
	if got, err := jc.GetTime("t.php"); err != nil || !got.Equal(mt.Truncate(time.Second)) {
		t.Errorf("GetTime: %v %v", got, err)
	}
	if n, err := jc.FileSize("t.php"); err != nil || n != 1234 {
		t.Errorf("FileSize: %d %v", n, err)
	}
}

// TestCmdSetMtimeEpoch: MFMT, SITE UTIME and MDTM with a time set the
// Unix epoch as any other time (the agent protocol once took 0 for "leave
// unchanged", and the mtime stayed as it was), and times before 1970.
func TestCmdSetMtimeEpoch(t *testing.T) {
	e := start(t, nil)
	epoch := time.Unix(0, 0)
	f1 := putFile(t, e, "alice", "f1.php", []byte("1"), 0o644)
	f2 := putFile(t, e, "alice", "f2.php", []byte("2"), 0o644)
	f3 := putFile(t, e, "alice", "f3.php", []byte("3"), 0o644)

	c := ctlLogin(t, e, "alice")
	c.must(213, "MFMT 19700101000000 f1.php")
	wantMtime(t, f1, epoch)
	if got := c.must(213, "MDTM f1.php"); got != "19700101000000" {
		t.Errorf("MDTM after MFMT to the epoch: %q", got)
	}
	c.must(200, "SITE UTIME 19700101000000 f2.php")
	wantMtime(t, f2, epoch)
	c.must(213, "MDTM 19700101000000 f3.php")
	wantMtime(t, f3, epoch)
	c.must(213, "MFMT 19691231235959 f1.php")
	wantMtime(t, f1, epoch.Add(-time.Second))
}

func TestCmdSetMtime(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	t1 := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	t2 := time.Date(2019, 2, 3, 4, 5, 6, 0, time.UTC)
	f1 := putFile(t, e, "alice", "f1.php", []byte("1"), 0o644)
	f2 := putFile(t, e, "alice", "f2.php", []byte("2"), 0o644)
	f3 := putFile(t, e, "alice", "f 3.php", []byte("3"), 0o644)

	c := ctlLogin(t, e, "alice")
	c.must(213, "MFMT 20200102030405 f1.php")
	wantMtime(t, f1, t1)
	if got := c.must(213, "MDTM f1.php"); got != "20200102030405" {
		t.Errorf("MDTM after MFMT: %q", got)
	}
	// lftp's fallbacks: SITE UTIME <time> <file>, then
	// SITE UTIME <file> <atime> <mtime> <ctime> UTC.
	c.must(200, "SITE UTIME 20200102030405 f2.php")
	wantMtime(t, f2, t1)
	c.must(200, "SITE UTIME f 3.php 20190203040506 20190203040506 20190203040506 UTC")
	wantMtime(t, f3, t2)
	c.must(200, "SITE UTIME f2.php 20190203040506 20190203040506 20190203040506 UTC")
	wantMtime(t, f2, t2)
	if code, msg := c.cmd("SITE UTIME nonsense"); code/100 != 5 {
		t.Errorf("SITE UTIME with bad arguments: %d %s", code, msg)
	}

	jc := dialCmd(t, e, "alice")
	if err := jc.SetTime("f1.php", t2); err != nil {
		t.Fatal(err)
	}
	wantMtime(t, f1, t2)

	// lftp sends MFMT as soon as the data is written, before the 226. Here
	// MFMT goes out while half the data is still to come; whatever the
	// order of the replies, the mtime must survive the commit.
	for _, name := range []string{"during.php", "f1.php"} {
		data := noise(t, 3<<20)
		dc := c.pasv()
		c.must(150, "STOR %s", name)
		if _, err := dc.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		c.send("MFMT 20200102030405 %s", name)
		if _, err := dc.Write(data[len(data)/2:]); err != nil {
			t.Fatal(err)
		}
		dc.Close()
		var codes []int
		for range 2 {
			code, _ := c.read()
			codes = append(codes, code)
		}
		if sort.Ints(codes); !slices.Equal(codes, []int{213, 226}) {
			t.Fatalf("STOR %s with MFMT during the data: replies %v, want 213 and 226", name, codes)
		}
		p := filepath.Join(dir, name)
		wantFile(t, p, data)
		wantMtime(t, p, t1)
	}

	// MFMT right after the 226 (PhpStorm, VS Code).
	data := []byte("<?php // after")
	c.put(data, "STOR after.php")
	c.must(213, "MFMT 20190203040506 after.php")
	wantFile(t, filepath.Join(dir, "after.php"), data)
	wantMtime(t, filepath.Join(dir, "after.php"), t2)
	if got := agenttest.TempFiles(t, dir); len(got) != 0 {
		t.Errorf("temp files left: %q", got)
	}
	e.AgentIdle(t)
}

// An upload whose commit fails gets an error reply on that transfer, never
// a 226, and leaves nothing behind: here the target becomes a non-empty
// directory while the data is on its way, so the agent's rename fails.
func TestCmdStorCommitFails(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	target := putFile(t, e, "alice", "target.php", []byte("old"), 0o644)
	c := ctlLogin(t, e, "alice")

	data := noise(t, 1<<20)
	dc := c.pasv()
	c.must(150, "STOR target.php")
	if _, err := dc.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(target); err != nil {
		t.Fatal(err)
	}
	putFile(t, e, "alice", "target.php/keep.txt", []byte("keep"), 0o644)
	if _, err := dc.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	dc.Close()
	code, msg := c.read()
	t.Logf("STOR whose commit failed: %d %s", code, msg)
	if code/100 != 5 || !strings.Contains(msg, "target.php") {
		t.Errorf("STOR whose commit failed: %d %q, want a 5xx naming the file", code, msg)
	}
	wantFile(t, filepath.Join(target, "keep.txt"), []byte("keep"))
	if got := agenttest.TempFiles(t, dir); len(got) != 0 {
		t.Errorf("temp files left: %q", got)
	}
	c.must(200, "NOOP")
	e.AgentIdle(t)
}

func TestCmdStorReplace(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")

	t.Run("KeepsMode", func(t *testing.T) {
		p := putFile(t, e, "alice", "keep.php", []byte("old"), 0o600)
		jc := dialCmd(t, e, "alice")
		data := []byte("<?php echo 'new';")
		if err := jc.Stor("keep.php", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		wantFile(t, p, data)
		wantMode(t, p, 0o600)
	})

	t.Run("Atomic", func(t *testing.T) {
		old := []byte("<?php echo 'old';")
		p := putFile(t, e, "alice", "big.php", old, 0o644)
		data := noise(t, 4<<20)
		c := ctlLogin(t, e, "alice")
		dc := c.pasv()
		c.must(150, "STOR big.php")
		if _, err := dc.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		// The upload is in progress once its temp file exists.
		eventually(t, 5*time.Second, "no temp file while the upload is in progress", func() bool {
			return len(agenttest.TempFiles(t, dir)) > 0
		})
		wantFile(t, p, old)
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range ents {
			if n := de.Name(); n != "big.php" && n != "keep.php" && !strings.HasPrefix(n, agent.TempPrefix) {
				t.Errorf("visible during the upload: %q", n)
			}
		}
		// Listings never show the temp file.
		jc := dialCmd(t, e, "alice")
		ls, err := jc.NameList("")
		if err != nil {
			t.Fatal(err)
		}
		if sort.Strings(ls); !slices.Equal(ls, []string{"big.php", "keep.php"}) {
			t.Errorf("NLST during the upload: %q", ls)
		}
		if _, err := dc.Write(data[len(data)/2:]); err != nil {
			t.Fatal(err)
		}
		dc.Close()
		c.expect(226, "STOR big.php")
		wantFile(t, p, data)
		wantMode(t, p, 0o644)
		if got := agenttest.TempFiles(t, dir); len(got) != 0 {
			t.Errorf("temp files left: %q", got)
		}
	})
	e.AgentIdle(t)
}

func TestCmdAppendAndRest(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	jc := dialCmd(t, e, "alice")

	// APPE
	if err := jc.Stor("log.txt", strings.NewReader("hello, ")); err != nil {
		t.Fatal(err)
	}
	if err := jc.Append("log.txt", strings.NewReader("world")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "log.txt"), []byte("hello, world"))
	if err := jc.Append("fresh.txt", strings.NewReader("first")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "fresh.txt"), []byte("first"))

	// REST + STOR resumes an interrupted upload in place: the client
	// closed the data connection after n bytes (which commits them),
	// then sends the rest from n.
	data := noise(t, 3<<20)
	const n = 1<<20 + 123
	if err := jc.Stor("resume.bin", bytes.NewReader(data[:n])); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "resume.bin")
	before, err := os.Stat(p)
	if err != nil || before.Size() != n {
		t.Fatalf("after the first part: %v %v", before, err)
	}
	if err := jc.StorFrom("resume.bin", bytes.NewReader(data[n:]), n); err != nil {
		t.Fatal(err)
	}
	wantFile(t, p, data)
	after, _ := os.Stat(p)
	if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
		t.Errorf("REST+STOR replaced the file instead of writing in place")
	}

	// REST + RETR resumes a download.
	r, err := jc.RetrFrom("resume.bin", 777)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data[777:]) {
		t.Fatalf("RETR from 777: %d bytes, %v", len(got), err)
	}
	e.AgentIdle(t)
}

func TestCmdDeleteAndDirs(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	putFile(t, e, "alice", "d.txt", []byte("x"), 0o644)
	putFile(t, e, "alice", "full/x.txt", []byte("x"), 0o644)
	c := ctlLogin(t, e, "alice")

	c.must(250, "DELE d.txt")
	if _, err := os.Stat(filepath.Join(dir, "d.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("d.txt after DELE: %v", err)
	}
	if code, msg := c.cmd("DELE d.txt"); code != 550 {
		t.Errorf("DELE of a missing file: %d %s", code, msg)
	}

	c.must(257, "MKD newdir")
	if fi, err := os.Stat(filepath.Join(dir, "newdir")); err != nil || !fi.IsDir() {
		t.Fatalf("newdir after MKD: %v %v", fi, err)
	}
	// VS Code's mkdir -p counts a 550 containing "file exists" as success.
	code, msg := c.cmd("MKD newdir")
	if code != 550 || !strings.Contains(strings.ToLower(msg), "file exists") {
		t.Errorf("MKD of an existing directory: %d %q, want 550 ... file exists", code, msg)
	}
	if code, msg := c.cmd("MKD nothere/deeper"); code != 550 {
		t.Errorf("MKD in a missing directory: %d %s", code, msg)
	}
	if code, msg := c.cmd("DELE newdir"); code != 550 {
		t.Errorf("DELE of a directory: %d %s", code, msg)
	}
	if fi, err := os.Stat(filepath.Join(dir, "newdir")); err != nil || !fi.IsDir() {
		t.Fatalf("newdir after DELE: %v", err)
	}
	if code, msg := c.cmd("RMD full"); code != 550 {
		t.Errorf("RMD of a non-empty directory: %d %s", code, msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "full", "x.txt")); err != nil {
		t.Errorf("full/x.txt after RMD: %v", err)
	}
	c.must(250, "RMD newdir")
	if _, err := os.Stat(filepath.Join(dir, "newdir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("newdir after RMD: %v", err)
	}
	if code, msg := c.cmd("RMD full/x.txt"); code != 550 {
		t.Errorf("RMD of a file: %d %s", code, msg)
	}

	// The same through jlaffaye/ftp.
	jc := dialCmd(t, e, "alice")
	if err := jc.MakeDir("j"); err != nil {
		t.Fatal(err)
	}
	if code, msg := replyCode(jc.MakeDir("j")); code != 550 || !strings.Contains(strings.ToLower(msg), "file exists") {
		t.Errorf("MakeDir of an existing directory: %d %q", code, msg)
	}
	if err := jc.RemoveDir("j"); err != nil {
		t.Fatal(err)
	}
	if err := jc.Delete("full/x.txt"); err != nil {
		t.Fatal(err)
	}
	if err := jc.RemoveDir("full"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in the directory: %v", ents)
	}
}

func TestCmdRename(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	putFile(t, e, "alice", "src.php", []byte("new"), 0o644)
	putFile(t, e, "alice", "dst.php", []byte("old"), 0o644)
	putDir(t, e, "alice", "d1", 0o755)
	jc := dialCmd(t, e, "alice")

	// PhpStorm's "temporary file during upload": the rename replaces.
	if err := jc.Rename("src.php", "dst.php"); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "dst.php"), []byte("new"))
	if _, err := os.Stat(filepath.Join(dir, "src.php")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("source after the rename: %v", err)
	}
	if code, msg := replyCode(jc.Rename("dst.php", "nodir/dst.php")); code != 550 {
		t.Errorf("RNTO into a missing directory: %d %q, want 550", code, msg)
	}
	wantFile(t, filepath.Join(dir, "dst.php"), []byte("new"))
	if code, msg := replyCode(jc.Rename("nothere.php", "x.php")); code != 550 {
		t.Errorf("RNFR of a missing file: %d %q, want 550", code, msg)
	}
	if err := jc.Rename("d1", "d2"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "d2")); err != nil || !fi.IsDir() {
		t.Errorf("renamed directory: %v", err)
	}
	c := ctlLogin(t, e, "alice")
	if code, msg := c.cmd("RNTO x.php"); code != 503 {
		t.Errorf("RNTO without RNFR: %d %s", code, msg)
	}
}

func TestCmdSiteChmod(t *testing.T) {
	e := start(t, nil)
	p := putFile(t, e, "alice", "f.php", []byte("x"), 0o644)
	d := putDir(t, e, "alice", "d", 0o755)
	c := ctlLogin(t, e, "alice")
	c.must(200, "SITE CHMOD 640 f.php")
	wantMode(t, p, 0o640)
	c.must(200, "SITE CHMOD 0600 /f.php")
	wantMode(t, p, 0o600)
	c.must(200, "SITE CHMOD 750 d")
	wantMode(t, d, 0o750)
	if code, msg := c.cmd("SITE CHMOD 640 nothere.php"); code != 550 {
		t.Errorf("SITE CHMOD of a missing file: %d %s", code, msg)
	}
	if code, msg := c.cmd("SITE CHMOD xyz f.php"); code/100 != 5 {
		t.Errorf("SITE CHMOD with a bad mode: %d %s", code, msg)
	}
	// Without a path (ftpserverlib's handleCHMOD would index past the
	// arguments): a syntax error, not an internal one.
	if code, msg := c.cmd("SITE CHMOD 640"); code != 501 {
		t.Errorf("SITE CHMOD without a path: %d %s", code, msg)
	}
	c.must(200, "NOOP")
	wantMode(t, p, 0o600)
}

func TestCmdHashes(t *testing.T) {
	e := start(t, nil)
	data := noise(t, 1<<20+17)
	putFile(t, e, "alice", "h.bin", data, 0o644)
	sum := func(h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}, b []byte) string {
		h.Write(b)
		return hex.EncodeToString(h.Sum(nil))
	}
	want := map[string]string{
		"SHA-256": sum(sha256.New(), data),
		"SHA-1":   sum(sha1.New(), data),
		"MD5":     sum(md5.New(), data),
		"SHA-512": sum(sha512.New(), data),
		"CRC32":   fmt.Sprintf("%08x", crc32.ChecksumIEEE(data)),
	}
	c := ctlLogin(t, e, "alice")
	last := func(msg string) string {
		ls := strings.Split(msg, "\n")
		return strings.TrimSpace(ls[len(ls)-1])
	}

	// HASH with the default (SHA-256), then each algorithm via OPTS HASH.
	wantLine := fmt.Sprintf("SHA-256 0-%d %s h.bin", len(data), want["SHA-256"])
	if got := last(c.must(213, "HASH h.bin")); got != wantLine {
		t.Errorf("HASH (default): %q, want %q", got, wantLine)
	}
	for _, algo := range []string{"MD5", "SHA-1", "SHA-512", "CRC32", "SHA-256"} {
		c.must(200, "OPTS HASH %s", algo)
		wantLine := fmt.Sprintf("%s 0-%d %s h.bin", algo, len(data), want[algo])
		if got := last(c.must(213, "HASH h.bin")); got != wantLine {
			t.Errorf("HASH %s: %q, want %q", algo, got, wantLine)
		}
	}
	if got := c.must(200, "OPTS HASH"); got != "SHA-256" {
		t.Errorf("OPTS HASH: %q", got)
	}
	if code, msg := c.cmd("OPTS HASH WHIRLPOOL"); code != 501 {
		t.Errorf("OPTS HASH of an unknown algorithm: %d %s", code, msg)
	}

	// The X* commands answer 250 with the bare hex digest.
	for cmd, algo := range map[string]string{"XMD5": "MD5", "MD5": "MD5", "XSHA1": "SHA-1", "XSHA": "SHA-1", "XSHA256": "SHA-256", "XSHA512": "SHA-512", "XCRC": "CRC32"} {
		if got := last(c.must(250, "%s h.bin", cmd)); got != want[algo] {
			t.Errorf("%s: %q, want %q", cmd, got, want[algo])
		}
	}
	// A range: XSHA256 file start end.
	part := sha256.Sum256(data[10:100000])
	if got := last(c.must(250, "XSHA256 h.bin 10 100000")); got != hex.EncodeToString(part[:]) {
		t.Errorf("XSHA256 of a range: %q", got)
	}
	if code, msg := c.cmd("XMD5 nothere.bin"); code != 550 {
		t.Errorf("XMD5 of a missing file: %d %s", code, msg)
	}
	// Relative to the working directory (ftpserverlib stats the argument
	// as given; the driver resolves it).
	putFile(t, e, "alice", "sub/s.bin", data[:1000], 0o644)
	c.must(250, "CWD sub")
	subSum := md5.Sum(data[:1000])
	if got := last(c.must(250, "XMD5 s.bin")); got != hex.EncodeToString(subSum[:]) {
		t.Errorf("XMD5 after CWD: %q", got)
	}
	subSHA := sha256.Sum256(data[:1000])
	if got := last(c.must(213, "HASH s.bin")); got != fmt.Sprintf("SHA-256 0-1000 %x s.bin", subSHA) {
		t.Errorf("HASH after CWD: %q", got)
	}
	if got := last(c.must(250, "XSHA256 /h.bin")); got != want["SHA-256"] {
		t.Errorf("XSHA256 of an absolute path after CWD: %q", got)
	}
	e.AgentIdle(t)
}

// freePortRange finds n consecutive free ports below the ephemeral range.
func freePortRange(t testing.TB, n int) (int, int) {
	t.Helper()
	for range 50 {
		base := 20000 + mrand.IntN(12000)
		var ls []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base, base + n - 1
		}
	}
	t.Skip("no free passive port range")
	return 0, 0
}

func TestCmdPassive(t *testing.T) {
	t.Run("PASVAndEPSV", func(t *testing.T) {
		e := start(t, nil)
		data := noise(t, 300<<10)
		for _, epsvOff := range []bool{false, true} {
			jc := dialCmd(t, e, "alice", ftp.DialWithDisabledEPSV(epsvOff))
			name := fmt.Sprintf("p-%v.bin", epsvOff)
			if err := jc.Stor(name, bytes.NewReader(data)); err != nil {
				t.Fatalf("STOR (EPSV disabled %v): %v", epsvOff, err)
			}
			wantFile(t, filepath.Join(e.UserDir("alice"), name), data)
			r, err := jc.Retr(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("RETR (EPSV disabled %v): %d bytes, %v", epsvOff, len(got), err)
			}
		}
		c := ctlLogin(t, e, "alice")
		dc := c.epsv()
		c.must(150, "STOR e.txt")
		dc.Write([]byte("epsv"))
		dc.Close()
		c.expect(226, "STOR over EPSV")
		wantFile(t, filepath.Join(e.UserDir("alice"), "e.txt"), []byte("epsv"))
		if ip, _ := c.pasvAddr(); ip != "127.0.0.1" {
			t.Errorf("PASV address %s, want the address the client connected to", ip)
		}
		c.must(226, "ABOR") // drop the unused passive listener
		e.AgentIdle(t)
	})

	t.Run("PortRange", func(t *testing.T) {
		lo, hi := freePortRange(t, 10)
		e := start(t, func(cfg *config.Config) { cfg.FTP.PassivePorts = config.PortRange{First: uint16(lo), Last: uint16(hi)} })
		c := ctlLogin(t, e, "alice")
		for range 3 {
			if _, port := c.pasvAddr(); port < lo || port > hi {
				t.Errorf("PASV port %d outside %d-%d", port, lo, hi)
			}
			if port := c.epsvPort(); port < lo || port > hi {
				t.Errorf("EPSV port %d outside %d-%d", port, lo, hi)
			}
		}
		c.put([]byte("ranged"), "STOR r.txt")
		wantFile(t, filepath.Join(e.UserDir("alice"), "r.txt"), []byte("ranged"))
		if got := lines(c.get("NLST")); !slices.Equal(got, []string{"r.txt"}) {
			t.Errorf("NLST through the range: %q", got)
		}
	})

	t.Run("PublicHost", func(t *testing.T) {
		// Listen on 127.0.0.2 so that the announced address differs
		// from the one the client dialled.
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("127.0.0.2 unavailable: %v", err)
		}
		l.Close()
		plain := start(t, func(cfg *config.Config) { cfg.Listen.FTP = "127.0.0.2:0" })
		if ip, _ := ctlLogin(t, plain, "alice").pasvAddr(); ip != "127.0.0.2" {
			t.Errorf("PASV without public_host: %s, want 127.0.0.2", ip)
		}
		e := start(t, func(cfg *config.Config) {
			cfg.Listen.FTP = "127.0.0.2:0"
			cfg.FTP.PublicHost = "127.0.0.1"
		})
		c := ctlLogin(t, e, "alice")
		msg := c.must(227, "PASV")
		if !strings.Contains(msg, "(127,0,0,1,") {
			t.Errorf("PASV with public_host 127.0.0.1: %q", msg)
		}
		m := pasvRe.FindStringSubmatch(msg)
		p1, _ := strconv.Atoi(m[5])
		p2, _ := strconv.Atoi(m[6])
		dc := dataDial(t, fmt.Sprintf("127.0.0.1:%d", p1*256+p2))
		c.must(150, "STOR pub.txt")
		dc.Write([]byte("public"))
		dc.Close()
		c.expect(226, "STOR through the public host")
		wantFile(t, filepath.Join(e.UserDir("alice"), "pub.txt"), []byte("public"))
	})
}

// portArg formats a local listener's address for PORT.
func portArg(l net.Listener) string {
	a := l.Addr().(*net.TCPAddr)
	ip := a.IP.To4()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", ip[0], ip[1], ip[2], ip[3], a.Port/256, a.Port%256)
}

// activeListener listens for the server's active-mode data connection.
func activeListener(t testing.TB) *net.TCPListener {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = l.SetDeadline(time.Now().Add(ioDeadline))
	t.Cleanup(func() { l.Close() })
	return l
}

func acceptData(t testing.TB, l *net.TCPListener) net.Conn {
	t.Helper()
	dc, err := l.Accept()
	if err != nil {
		t.Fatalf("server's active data connection: %v", err)
	}
	_ = dc.SetDeadline(time.Now().Add(ioDeadline))
	t.Cleanup(func() { dc.Close() })
	return dc
}

func TestCmdActive(t *testing.T) {
	e := start(t, nil)
	c := ctlLogin(t, e, "alice")
	data := noise(t, 200<<10)

	// PORT + STOR
	l := activeListener(t)
	c.must(200, "PORT %s", portArg(l))
	c.must(150, "STOR act.bin")
	dc := acceptData(t, l)
	if _, err := dc.Write(data); err != nil {
		t.Fatal(err)
	}
	dc.Close()
	c.expect(226, "STOR over PORT")
	wantFile(t, filepath.Join(e.UserDir("alice"), "act.bin"), data)

	// EPRT + RETR
	l = activeListener(t)
	c.must(200, "EPRT |1|127.0.0.1|%d|", l.Addr().(*net.TCPAddr).Port)
	c.must(150, "RETR act.bin")
	dc = acceptData(t, l)
	got, err := io.ReadAll(dc)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("RETR over EPRT: %d bytes, %v", len(got), err)
	}
	c.expect(226, "RETR over EPRT")

	// PORT + LIST
	l = activeListener(t)
	c.must(200, "PORT %s", portArg(l))
	c.must(150, "LIST")
	dc = acceptData(t, l)
	b, err := io.ReadAll(dc)
	if err != nil {
		t.Fatal(err)
	}
	c.expect(226, "LIST over PORT")
	if ls := parseLS(t, b); len(ls) != 1 || ls["act.bin"].size != int64(len(data)) {
		t.Errorf("LIST over PORT: %q", b)
	}

	// ftp.Config.DisableActiveMode refuses PORT and EPRT. config.FTP has
	// no key for it (server.startFTP never sets it), so a second
	// frontend is served on the same gateway with the option on.
	srv, err := upftp.New(e.Srv.Gateway, upftp.Config{DisableActiveMode: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := e.Srv.Gateway.Listen(upftp.Protocol(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("second frontend: %v", err)
		}
	})
	pe := &env{Env: e.Env, Addr: lis.Addr().String()}
	pc := ctlLogin(t, pe, "alice")
	l = activeListener(t)
	if code, msg := pc.cmd("PORT %s", portArg(l)); code != 421 {
		t.Errorf("PORT with active mode disabled: %d %s", code, msg)
	}
	if code, msg := pc.cmd("EPRT |1|127.0.0.1|%d|", l.Addr().(*net.TCPAddr).Port); code != 421 {
		t.Errorf("EPRT with active mode disabled: %d %s", code, msg)
	}
	if got := parseLS(t, pc.get("LIST")); len(got) != 1 {
		t.Errorf("passive LIST with active mode disabled: %v", got)
	}
	e.AgentIdle(t)
}

func TestCmdAbort(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")

	t.Run("RETR", func(t *testing.T) {
		big := noise(t, 20<<20)
		putFile(t, e, "alice", "big.bin", big, 0o644)
		c := ctlLogin(t, e, "alice")
		dc := c.pasv()
		c.must(150, "RETR big.bin")
		head := make([]byte, 64<<10)
		if _, err := io.ReadFull(dc, head); err != nil || !bytes.Equal(head, big[:len(head)]) {
			t.Fatalf("start of the download: %v", err)
		}
		// ftpserverlib: 426 for the transfer, then 226 for the ABOR.
		c.send("ABOR")
		c.expect(426, "ABOR during RETR: the transfer's reply")
		c.expect(226, "ABOR during RETR: the ABOR's reply")
		dc.Close()
		c.must(200, "NOOP")
		if got := c.get("RETR big.bin"); !bytes.Equal(got, big) {
			t.Errorf("RETR after ABOR: %d bytes", len(got))
		}
		e.AgentIdle(t)
	})

	for _, tc := range []struct {
		name string
		old  []byte // nil: the target does not exist
	}{{"STOR-replace", []byte("<?php echo 'old';")}, {"STOR-new", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(dir, tc.name+".php")
			if tc.old != nil {
				putFile(t, e, "alice", tc.name+".php", tc.old, 0o644)
			}
			c := ctlLogin(t, e, "alice")
			dc := c.pasv()
			c.must(150, "STOR %s.php", tc.name)
			if _, err := dc.Write(noise(t, 2<<20)); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "upload never started", func() bool { return len(agenttest.TempFiles(t, dir)) > 0 })
			c.send("ABOR")
			c.expect(426, "ABOR during STOR: the transfer's reply")
			c.expect(226, "ABOR during STOR: the ABOR's reply")
			dc.Close()
			eventually(t, 5*time.Second, "temp file left after ABOR", func() bool { return len(agenttest.TempFiles(t, dir)) == 0 })
			if tc.old != nil {
				wantFile(t, target, tc.old)
			} else if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("aborted upload created %s: %v", target, err)
			}
			c.must(200, "NOOP")
			e.AgentIdle(t)
		})
	}
}

func TestCmdStatNoop(t *testing.T) {
	e := start(t, nil)
	putFile(t, e, "alice", "a.php", []byte("12345"), 0o644)
	putFile(t, e, "alice", "sub/b.php", []byte("x"), 0o644)
	c := ctlDial(t, e.Addr)
	c.must(200, "NOOP")
	if code, msg := c.cmd("STAT"); code != 530 {
		t.Errorf("STAT before login: %d %s", code, msg)
	}
	c.must(331, "USER alice")
	c.must(230, "PASS %s", gwtest.Users["alice"])
	if msg := c.must(211, "STAT"); !strings.Contains(msg, "Logged in as alice") {
		t.Errorf("STAT: %q", msg)
	}
	msg := c.must(213, "STAT a.php")
	var entry []byte
	for _, l := range strings.Split(msg, "\n") {
		if strings.HasPrefix(l, " ") {
			entry = append(entry, strings.TrimPrefix(l, " ")+"\n"...)
		}
	}
	if got := parseLS(t, entry); got["a.php"].perm != "-rw-r--r--" || got["a.php"].size != 5 {
		t.Errorf("STAT a.php: %q", msg)
	}
	// STAT of a directory lists it. ftpserverlib v0.32.3 prefixes each
	// line with a literal "%s" (handleSTATFile: c.writeLine(" %s" + ...)).
	msg = c.must(212, "STAT sub")
	if !strings.Contains(msg, "b.php") {
		t.Errorf("STAT sub: %q", msg)
	}
	if strings.Contains(msg, "%s") {
		t.Logf("STAT of a directory: %q (ftpserverlib's literal %%s)", msg)
	}
	if code, msg := c.cmd("STAT nothere"); code != 450 {
		t.Errorf("STAT of a missing file: %d %s", code, msg)
	}
	c.must(200, "NOOP")
}

func TestCmdLoginFailure(t *testing.T) {
	e := start(t, nil)
	c := ctlDial(t, e.Addr)
	c.must(331, "USER alice")
	if code, msg := c.cmd("PASS wrong"); code != 530 {
		t.Fatalf("wrong password: %d %s", code, msg)
	}
	// The server hangs up after a failed PASS; if it did not, nothing
	// may be reachable.
	c.send("PWD")
	if code, msg, err := c.tp.ReadResponse(0); err == nil && code != 530 {
		t.Errorf("after a failed login, PWD: %d %s", code, msg)
	}

	c = ctlDial(t, e.Addr)
	c.must(331, "USER mallory")
	if code, msg := c.cmd("PASS x"); code != 530 {
		t.Errorf("unknown user: %d %s", code, msg)
	}
	c = ctlDial(t, e.Addr)
	for _, cmd := range []string{"PWD", "LIST", "RETR a", "STOR a", "MKD a", "DELE a"} {
		if code, msg := c.cmd("%s", cmd); code != 530 {
			t.Errorf("%s without login: %d %s", cmd, code, msg)
		}
	}

	jc, err := ftp.Dial(e.Addr, ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Quit()
	if code, _ := replyCode(jc.Login("bob", gwtest.Users["alice"])); code != 530 {
		t.Errorf("jlaffaye/ftp login with alice's password as bob: %v", code)
	}
	if _, err := os.Stat(e.UserDir("bob")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed login reached the agent: %v", err)
	}
}

func TestCmdErrorReasons(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// dave's agent answers until the test stops it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	flaky := agenttest.Serve(t, "", lis, "secret-token")
	e := start(t, func(cfg *config.Config) {
		cfg.Agents["down"] = config.Agent{Address: "127.0.0.1:1", TokenFile: tok}
		cfg.Agents["flaky"] = config.Agent{Address: flaky.Addr, TokenFile: tok}
		cfg.Users = append(cfg.Users,
			config.User{Name: "carol", PasswordHash: string(h), Mounts: []config.Mount{{Path: "/", Agent: "down", Root: "carol"}}},
			config.User{Name: "dave", PasswordHash: string(h), Mounts: []config.Mount{{Path: "/", Agent: "flaky", Root: "dave"}}})
	})

	jc := dialCmd(t, e, "alice")
	_, err = jc.Retr("/missing/file.php")
	if code, msg := replyCode(err); code != 550 || !strings.Contains(msg, "/missing/file.php") {
		t.Errorf("RETR of a missing file: %d %q, want 550 naming the path", code, msg)
	}
	c := ctlLogin(t, e, "alice")
	if code, msg := c.cmd("RETR missing.php"); code != 550 || !strings.Contains(msg, "missing.php") {
		t.Errorf("raw RETR of a missing file: %d %q", code, msg)
	}
	if code, msg := c.cmd("STOR nodir/x.php"); code != 553 || !strings.Contains(msg, "nodir/x.php") {
		t.Errorf("STOR into a missing directory: %d %q, want 553 (vsftpd's) naming the path", code, msg)
	}
	c.must(200, "NOOP")

	// carol's agent is down: the login says so, within the login timeout,
	// with a 421 (try later), not a 530 (wrong password), and closes.
	begin := time.Now()
	cc := ctlDial(t, e.Addr)
	cc.must(331, "USER carol")
	code, msg := cc.cmd("PASS carol-pw")
	if code != 421 || !strings.Contains(msg, "agent down for user carol unreachable") {
		t.Errorf("login with the agent down: %d %q, want 421 agent down for user carol unreachable: ...", code, msg)
	}
	if d := time.Since(begin); d > 30*time.Second {
		t.Errorf("login with the agent down took %v", d)
	}
	if _, _, err := cc.tp.ReadResponse(0); err == nil {
		t.Error("the connection stayed open after the 421")
	}
	// A wrong password is still a 530, in words.
	wc := ctlDial(t, e.Addr)
	wc.must(331, "USER dave")
	if code, msg := wc.cmd("PASS wrong"); code != 530 || msg != "Login incorrect." {
		t.Errorf("wrong password: %d %q, want 530 Login incorrect.", code, msg)
	}

	// dave logs in, works, then his agent goes away mid-session: every
	// command that needs it answers 451 naming agent and user, nothing
	// lands, the session stays usable.
	dc := ctlDial(t, e.Addr)
	dc.must(331, "USER dave")
	dc.must(230, "PASS carol-pw")
	dc.must(200, "TYPE I")
	dc.must(257, "MKD src")
	dc.put([]byte("<?php // a"), "STOR src/a.php")
	// The agent goes away in the middle of an upload: that transfer's
	// reply is the 451, and the old file is untouched.
	const reason = "agent flaky for user dave unreachable"
	data := noise(t, 4<<20)
	up := dc.pasv()
	dc.must(150, "STOR src/a.php")
	if _, err := up.Write(data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	flaky.Stop()
	_, _ = up.Write(data[1<<20:])
	up.Close()
	code, msg = dc.read()
	t.Logf("STOR with the agent gone mid-upload: %d %s", code, msg)
	if code != 451 || !strings.Contains(msg, reason) {
		t.Errorf("STOR with the agent gone mid-upload: %d %q, want 451 ... %s", code, msg, reason)
	}
	for _, cmd := range []string{"SIZE src/a.php", "MDTM src/a.php", "DELE src/a.php", "MKD other", "RNFR src/a.php",
		"MFMT 20200101000000 src/a.php", "SITE CHMOD 600 src/a.php", "XSHA256 src/a.php", "MLST src/a.php", "CWD src"} {
		if code, msg := dc.cmd("%s", cmd); code != 451 || !strings.Contains(msg, reason) {
			t.Errorf("%s with the agent gone: %d %q, want 451 ... %s", cmd, code, msg, reason)
		}
	}
	for _, cmd := range []string{"STOR src/b.php", "RETR src/a.php", "MLSD src", "LIST src"} {
		if code, msg := dc.tryTransfer([]byte("<?php // b"), "%s", cmd); code != 451 || !strings.Contains(msg, reason) {
			t.Errorf("%s with the agent gone: %d %q, want 451 ... %s", cmd, code, msg, reason)
		}
	}
	dc.must(200, "NOOP")
	if got, err := os.ReadFile(filepath.Join(flaky.Dir, "dave", "src", "a.php")); err != nil || string(got) != "<?php // a" {
		t.Errorf("a.php after the outage: %q %v", got, err)
	}
	// The stopped agent's own handlers remove the upload's temp file as
	// they end, after Stop has returned (grpc does not wait for them).
	eventually(t, 10*time.Second, "src to hold only a.php after the outage", func() bool {
		ents, err := os.ReadDir(filepath.Join(flaky.Dir, "dave", "src"))
		return err == nil && len(ents) == 1
	})
	e.AgentIdle(t)
}

// A login over the user's session limit is a 421 that says so (try later),
// not a 530 (wrong password); the first session goes on.
func TestCmdLoginLimit(t *testing.T) {
	e := start(t, func(cfg *config.Config) { cfg.Connections.MaxPerUser = 1 })
	first := ctlLogin(t, e, "alice")
	c := ctlDial(t, e.Addr)
	c.must(331, "USER alice")
	if code, msg := c.cmd("PASS %s", gwtest.Users["alice"]); code != 421 || !strings.Contains(msg, "at most 1 for user alice") {
		t.Errorf("second login over max_per_user 1: %d %q, want 421 ... at most 1 for user alice", code, msg)
	}
	first.must(200, "NOOP")
}

func TestCmdEmptyAndUnicodeNames(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	jc := dialCmd(t, e, "alice")

	if err := jc.Stor("empty.txt", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "empty.txt"), nil)
	putFile(t, e, "alice", "was-full.txt", []byte("content"), 0o644)
	if err := jc.Stor("was-full.txt", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "was-full.txt"), nil)

	const name = "ünï cødé.php"
	data := []byte("<?php echo 'ünï';")
	if err := jc.MakeDir("my dir"); err != nil {
		t.Fatal(err)
	}
	if err := jc.Stor("my dir/"+name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "my dir", name), data)
	r, err := jc.Retr("my dir/" + name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("RETR %q: %q %v", name, got, err)
	}
	ents, err := jc.List("my dir")
	if err != nil || len(ents) != 1 || ents[0].Name != name {
		t.Errorf("List of my dir: %v %v", ents, err)
	}
	c := ctlLogin(t, e, "alice")
	if ls := parseLS(t, c.get("LIST my dir")); ls[name].size != int64(len(data)) {
		t.Errorf("LIST my dir: %v", ls)
	}
	c.must(213, "MFMT 20200102030405 my dir/%s", name)
	wantMtime(t, filepath.Join(dir, "my dir", name), time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
	if got := c.must(213, "SIZE my dir/%s", name); got != strconv.Itoa(len(data)) {
		t.Errorf("SIZE: %q", got)
	}
	c.must(250, "DELE my dir/%s", name)
	if _, err := os.Stat(filepath.Join(dir, "my dir", name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after DELE: %v", err)
	}
	e.AgentIdle(t)
}

// AVBL says what can be uploaded where: the agent's free space on a
// writable mount, and nothing on a read-only mount or in the directory
// above a user's mounts, which take no upload.
func TestAVBLAboveAndOnReadOnlyMounts(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		for i := range cfg.Users {
			m := cfg.Users[i].Mounts[0]
			site, logs := m, m
			site.Path, logs.Path, logs.ReadOnly = "/site", "/logs", true
			cfg.Users[i].Mounts = []config.Mount{site, logs}
		}
	})
	c := ctlLogin(t, e, "alice")
	for _, tc := range []struct {
		dir  string
		free bool
	}{{"/site", true}, {"/", false}, {"/logs", false}} {
		msg := c.must(213, "AVBL %s", tc.dir)
		n, err := strconv.ParseInt(strings.TrimSpace(msg), 10, 64)
		if err != nil || (n > 0) != tc.free {
			t.Errorf("AVBL %s: %q, want free space %v", tc.dir, msg, tc.free)
		}
	}
}
