package ftp_test

// FuzzFTPArguments sends fuzzed path arguments to the commands that hand
// them to the ClientDriver, over one control connection to a real gateway
// with an embedded agent, and asserts that every reply is a well-formed FTP
// reply, that no handler panicked, and that nothing appears outside alice's
// directory: not in bob's, not beside the agent root, not through the
// symbolic links in alice's directory that lead out of it.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/escapetest"
	"github.com/upgate/upgate/internal/gwtest"
)

// fuzzDeadline bounds the commands of one fuzz input.
const fuzzDeadline = 5 * time.Second

// maxCommandLine is ftpserverlib's longest command line: it disconnects a client
// that sends a longer one.
const maxCommandLine = 4096

// ftpReplyLine is the first line of an FTP reply: three digits, then a space
// or, for a multi-line reply, a dash.
var ftpReplyLine = regexp.MustCompile(`^[1-5][0-9][0-9][ -]`)

// rawCtl is a control connection that reads replies byte-exactly, so that
// a malformed one fails instead of being repaired.
type rawCtl struct {
	nc net.Conn
	r  *bufio.Reader
}

// reply reads one reply and checks its form; an error wraps io.EOF or a
// net error when the connection ended.
func (c *rawCtl) reply() (code string, text string, err error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	if !strings.HasSuffix(line, "\r\n") || !ftpReplyLine.MatchString(line) {
		return "", "", fmt.Errorf("malformed reply line %q", line)
	}
	code, text = line[:3], line[4:len(line)-2]
	if line[3] == ' ' {
		return code, text, nil
	}
	// A multi-line reply ends at the line that starts with its code and
	// a space (RFC 959 4.2); the lines between may start with anything.
	for {
		if line, err = c.r.ReadString('\n'); err != nil {
			return "", "", fmt.Errorf("multi-line %s reply: %w", code, err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			return "", "", fmt.Errorf("malformed continuation line %q", line)
		}
		text += "\n" + line[:len(line)-2]
		if strings.HasPrefix(line, code+" ") {
			return code, text, nil
		}
	}
}

// cmd sends one command line and reads its reply.
func (c *rawCtl) cmd(line string) (string, string, error) {
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		return "", "", err
	}
	return c.reply()
}

// connClosed reports whether err means the server ended the connection.
func connClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// fuzzFTP is the gateway of a fuzz run, its layout on disk
// (escapetest), and the control connection logged in as alice.
type fuzzFTP struct {
	*escapetest.Layout
	e    *env
	addr string
	ctl  *rawCtl
}

func newFuzzFTP(f *testing.F) *fuzzFTP {
	f.Helper()
	z := &fuzzFTP{Layout: escapetest.New(f)}
	e := start(f, func(cfg *config.Config) {
		cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: z.Agent}}
	})
	z.e, z.addr = e, e.Addr
	f.Cleanup(func() {
		if z.ctl != nil {
			z.ctl.nc.Close()
		}
	})
	return z
}

// connect (re)opens the control connection and logs alice in.
func (z *fuzzFTP) connect(t *testing.T) {
	t.Helper()
	if z.ctl != nil {
		z.ctl.nc.Close()
	}
	nc, err := net.DialTimeout("tcp", z.addr, fuzzDeadline)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Now().Add(fuzzDeadline))
	z.ctl = &rawCtl{nc: nc, r: bufio.NewReader(nc)}
	if code, text, err := z.ctl.reply(); err != nil || code != "220" {
		t.Fatalf("greeting: %s %s %v", code, text, err)
	}
	for _, step := range []struct{ line, want string }{
		{"USER alice", "331"}, {"PASS " + gwtest.Users["alice"], "230"}, {"TYPE I", "200"},
	} {
		if code, text, err := z.ctl.cmd(step.line); err != nil || code != step.want {
			t.Fatalf("%s: %s %s %v", strings.Fields(step.line)[0], code, text, err)
		}
	}
}

// check fails if anything appeared outside alice's directory.
func (z *fuzzFTP) check(t *testing.T, after string) {
	t.Helper()
	if what, err := z.Escaped(); err != nil || what != "" {
		t.Fatalf("after %q: %s %v", after, what, err)
	}
}

func FuzzFTPArguments(f *testing.F) {
	for _, s := range []string{
		"", "a", "dir/sub", "/", "..", "../bob/x", "/../../outside/x", "../../../../../tmp/x", "esc/x", "tobob/x",
		"esc", "tobob", "./a/../b", "a b", " lead", "trail ", "*", "a\x00b", "~", "\\..\\x", "seed",
		"20200101000000 f", "f 20200101000000 20200101000000 20200101000000 UTC",
		"f\t20200101000000\t20200101000000\t20200101000000\tUTC", "99991231235959 f", "00000101000000 f",
		strings.Repeat("a/", 200), strings.Repeat("x", 300), "\xff\xfe", "é/ü",
	} {
		f.Add(s)
	}
	z := newFuzzFTP(f)
	f.Fuzz(func(t *testing.T, in string) {
		name := z.begin(t, in)
		for _, line := range []string{
			"MKD " + name,
			"MKD esc/" + name,
			"MKD tobob/" + name,
			"SIZE " + name,
			"MFMT 20200101000000 " + name,
			"SITE UTIME " + name,
			"SITE UTIME 20200101000000 " + name,
			"SITE CHMOD 644 " + name,
			"SITE SYMLINK " + name + " lnk",
			"MKD lnk/x",
			"RNFR " + name,
			"RNTO " + name + ".renamed",
			"RNFR seed",
			"RNTO " + name,
		} {
			z.plain(t, line)
			z.check(t, line)
		}
	})
}

// begin starts one fuzz input: alice's directory as the layout made it
// (again at the input's end), the control connection logged in, and the
// input as a name, without the CR and LF that end an FTP command.
func (z *fuzzFTP) begin(t *testing.T, in string) string {
	t.Helper()
	z.Reset(t)
	t.Cleanup(func() { z.Reset(t) })
	if z.ctl == nil {
		z.connect(t)
	}
	_ = z.ctl.nc.SetDeadline(time.Now().Add(fuzzDeadline))
	return strings.NewReplacer("\r", "", "\n", "").Replace(in)
}

// plain sends a command that moves no data and checks its reply (see
// answered), which must be final.
func (z *fuzzFTP) plain(t *testing.T, line string) {
	t.Helper()
	code, text, err := z.ctl.cmd(line)
	if z.answered(t, line, code, text, err) && code[0] == '1' {
		t.Fatalf("%q: preliminary reply %s %s to a command without a transfer", line, code, text)
	}
}

// answered checks a reply to line: it fails t where the connection ended
// under a line that fits or a handler panicked, and reports whether a
// reply came. ftpserverlib hangs up on a line longer than it reads: then
// answered logs in again and reports false.
func (z *fuzzFTP) answered(t *testing.T, line, code, text string, err error) bool {
	t.Helper()
	switch {
	case err != nil && connClosed(err) && len(line)+2 > maxCommandLine:
		z.connect(t)
		return false
	case err != nil:
		t.Fatalf("%q: %v", line, err)
	case strings.Contains(text, "internal error"):
		t.Fatalf("%q: a handler panicked: %s %s", line, code, text)
	}
	return true
}

// transfer sends line on the control connection with a passive data
// connection (EPSV, to the gateway's loopback address) ready for it, and
// writes upload on it (a STOR or APPE) or reads what comes (a RETR or a
// listing). Each reply is checked (answered); the one after the data
// must be final.
func (z *fuzzFTP) transfer(t *testing.T, line string, upload []byte) {
	t.Helper()
	code, text, err := z.ctl.cmd("EPSV")
	if err != nil || code != "229" {
		t.Fatalf("EPSV before %q: %s %s %v", line, code, text, err)
	}
	i, j := strings.Index(text, "(|||"), strings.LastIndex(text, "|)")
	if i < 0 || j < i+4 {
		t.Fatalf("EPSV: %q", text)
	}
	dc, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", text[i+4:j]), fuzzDeadline)
	if err != nil {
		t.Fatalf("data connection for %q: %v", line, err)
	}
	defer dc.Close()
	_ = dc.SetDeadline(time.Now().Add(fuzzDeadline))
	code, text, err = z.ctl.cmd(line)
	if !z.answered(t, line, code, text, err) || code[0] != '1' {
		return
	}
	if upload != nil {
		if _, err := dc.Write(upload); err != nil {
			t.Logf("%q: writing the data: %v", line, err) // refused after the 150: the reply says why
		}
	} else if _, err := io.Copy(io.Discard, dc); err != nil {
		t.Fatalf("%q: reading the data: %v", line, err)
	}
	dc.Close()
	code, text, err = z.ctl.reply()
	if z.answered(t, line, code, text, err) && code[0] == '1' {
		t.Fatalf("%q: a second preliminary reply %s %s", line, code, text)
	}
}

// FuzzFTPTransfers sends the commands that move data (STOR, APPE, RETR
// after REST, the listings) and the ones that change the working
// directory, with a fuzzed name, data and restart offset, over one
// control connection with a passive data connection per transfer, and
// asserts what FuzzFTPArguments asserts, and that no upload's temp file
// stays behind and the agent holds no file open after each input.
func FuzzFTPTransfers(f *testing.F) {
	for _, s := range []struct {
		name string
		data []byte
		rest uint16
	}{
		{"a", []byte("data"), 0},
		{"seed", []byte("XY"), 2},
		{"dir/sub/f", nil, 0},
		{"esc/x", []byte("out"), 0},
		{"tobob/x", []byte("bob"), 1},
		{"../../outside/x", []byte("up"), 0},
		{"/", nil, 0},
		{"-la", nil, 0},
		{"*", nil, 0},
		{".", []byte("dot"), 0},
		{"seed/..", []byte("x"), 5},
		{"a b", make([]byte, 70000), 100},
		{"\xff\xfe", []byte("bad"), 0},
		{strings.Repeat("d/", 300), []byte("deep"), 0},
	} {
		f.Add(s.name, s.data, s.rest)
	}
	z := newFuzzFTP(f)
	f.Fuzz(func(t *testing.T, in string, data []byte, rest uint16) {
		name := z.begin(t, in)
		restAt := fmt.Sprintf("REST %d", rest)
		for _, s := range []struct {
			line   string
			upload []byte // nil: a download or a listing; not sent unless data
			data   bool
		}{
			{line: "TYPE I"},
			{line: "STOR " + name, upload: append([]byte{}, data...), data: true},
			{line: restAt},
			{line: "APPE " + name, upload: append([]byte{}, data...), data: true},
			{line: restAt},
			{line: "RETR " + name, data: true},
			{line: restAt},
			{line: "STOR " + name, upload: append([]byte{}, data...), data: true},
			{line: "LIST " + name, data: true},
			{line: "NLST " + name, data: true},
			{line: "MLSD " + name, data: true},
			{line: "MLST " + name},
			{line: "STAT " + name},
			{line: "TYPE A"},
			{line: "RETR " + name, data: true},
			{line: "TYPE I"},
			{line: "STOR esc/" + name, upload: []byte("x"), data: true},
			{line: "CWD " + name},
			{line: "STOR " + name, upload: []byte("in cwd"), data: true},
			{line: "LIST", data: true},
			{line: "CDUP"},
			{line: "CWD /"},
			{line: "DELE " + name},
			{line: "RMD " + name},
		} {
			if s.data {
				z.transfer(t, s.line, s.upload)
			} else {
				z.plain(t, s.line)
			}
			z.check(t, s.line)
		}
		z.WaitNoTemps(t, agent.TempPrefix, fuzzDeadline)
		z.e.AgentIdle(t)
	})
}
