package differential_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// ftpSide is one FTP server under test.
type ftpSide struct {
	name       string
	addr       string
	user, pass string
	dir        string // the user's "/" on disk
	a, b       *rawFTP
	// pending is an upload that a step started and a later step finishes.
	pending     net.Conn
	pendingRepl ftpReply
	idle        func()
}

// Reply codes are compared in one of two ways, chosen per step:
//
//   - exactly ("550") where clients act on the exact code: 550 for a
//     missing file, an existing directory or a non-empty one (mkdir -p
//     and lftp parse it), 257 with its quoted path (MKD, PWD), 213 with
//     its value (SIZE, MDTM, STAT of a path), 350 (RNFR, REST), 227 and
//     229 (PASV, EPSV), 331, 230 and 530 (login), 215 (SYST), 221;
//   - by the first digit ("5xx") where clients only tell success from
//     failure: 150/125 before a transfer, 226/250 after it, 200/202 for
//     settings, 250 for CWD, DELE, RMD, RNTO, 500/501/502/504 for
//     commands refused, 553 for a STOR that cannot create its file.
func exact(r ftpReply) string { return strconv.Itoa(r.Code) }
func digit(r ftpReply) string { return fmt.Sprintf("%dxx", r.Code/100) }

// one shows a single-reply command's outcome.
func one(r ftpReply, err error, show func(ftpReply) string) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return show(r)
}

// xfer shows a transfer's replies: the first by its digit, the final by
// show (or the refusal, if the server refused at once).
func xfer(reps []ftpReply, data []byte, err error, final func(ftpReply) string, withData bool) string {
	var l []string
	for i, r := range reps {
		if i == 0 && len(reps) > 1 {
			l = append(l, digit(r))
		} else {
			l = append(l, final(r))
		}
	}
	s := strings.Join(l, "/")
	if err != nil {
		s += " error: " + err.Error()
	}
	if withData && len(reps) > 1 {
		s += fmt.Sprintf(" DATA %d bytes %q", len(data), trunc(data))
	}
	return s
}

// listLine is ls -l's line as vsftpd writes it.
var listLine = regexp.MustCompile(`^(\S{10})\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+([A-Z][a-z]{2}\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4}))\s(.*)$`)

// canonListTime turns LIST's "Jan  2 15:04" or "Jan  2  2006" into
// "now" (within ten minutes of the run) or a date.
func canonListTime(s string) string {
	f := strings.Fields(s)
	if len(f) != 3 {
		return s
	}
	if strings.Contains(f[2], ":") {
		now := time.Now().UTC()
		t, err := time.Parse("Jan 2 15:04 2006", fmt.Sprintf("%s %s %s %d", f[0], f[1], f[2], now.Year()))
		if err != nil {
			return s
		}
		if t.After(now.Add(24 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		if d := now.Sub(t); d < 10*time.Minute && d > -10*time.Minute {
			return "now"
		}
		return t.Format("2006-01-02T15:04")
	}
	t, err := time.Parse("Jan 2 2006", strings.Join(f, " "))
	if err != nil {
		return s
	}
	return t.Format("2006-01-02")
}

// parseList shows LIST (or STAT path) lines: mode, size (files and
// links), time and name (with " -> target"), sorted by name; owner,
// group and link count are left out (the link counts are compared once,
// by "LIST /: link counts"). Lines that do not parse are shown whole.
func parseList(lines []string, withNlink bool) string {
	var l []string
	for _, line := range lines {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "total ") {
			continue
		}
		m := listLine.FindStringSubmatch(strings.TrimLeft(line, " "))
		if m != nil && hasCtl(m[7]) {
			continue // compared apart (deliberateDiffs), by "NLST /names: control characters"
		}
		if m == nil {
			l = append(l, fmt.Sprintf("unparsed %q", line))
			continue
		}
		e := fmt.Sprintf("%q %s", m[7], m[1])
		if m[1][0] != 'd' {
			e += " size=" + m[5]
		}
		e += " " + canonListTime(m[6])
		if withNlink {
			e = fmt.Sprintf("%q nlink=%s", m[7], m[2])
		}
		l = append(l, e)
	}
	sort.Strings(l)
	return "[" + strings.Join(l, "; ") + "]"
}

// seedFTP makes the fixtures both FTP servers start from (FTP cannot
// make links): a file with a fixed mtime, a directory, and links to the
// file, to the directory and to nothing, owned by uid/gid.
func seedFTP(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	fix := filepath.Join(dir, "fix")
	must(os.MkdirAll(filepath.Join(fix, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(fix, "file.txt"), []byte("fixture file\n"), 0o644))
	must(os.WriteFile(filepath.Join(fix, "sub", "inner.txt"), []byte("inner\n"), 0o644))
	must(os.Symlink("file.txt", filepath.Join(fix, "ln")))
	must(os.Symlink("sub", filepath.Join(fix, "lnd")))
	must(os.Symlink("nowhere", filepath.Join(fix, "dang")))
	// A link to itself, apart from /fix so that its listings stay as
	// they are.
	loop := filepath.Join(dir, "loop")
	must(os.Mkdir(loop, 0o755))
	must(os.Symlink("self", filepath.Join(loop, "self")))
	must(os.Mkdir(filepath.Join(loop, "d"), 0o755))
	must(os.Symlink("d", filepath.Join(loop, "dl")))
	must(os.Symlink("../fix/file.txt/x", filepath.Join(loop, "nf"))) // a file on the way: ENOTDIR
	for _, p := range []string{loop, filepath.Join(loop, "self"), filepath.Join(loop, "d"), filepath.Join(loop, "dl"), filepath.Join(loop, "nf")} {
		must(os.Lchown(p, uid, gid))
	}
	old := time.Unix(tMtime, 0)
	must(os.Chtimes(filepath.Join(fix, "file.txt"), old, old))
	must(os.Chtimes(filepath.Join(fix, "sub", "inner.txt"), old, old))
	must(os.Chtimes(filepath.Join(fix, "sub"), old, old))
	for _, p := range []string{fix, filepath.Join(fix, "sub"), filepath.Join(fix, "file.txt"), filepath.Join(fix, "sub", "inner.txt"),
		filepath.Join(fix, "ln"), filepath.Join(fix, "lnd"), filepath.Join(fix, "dang")} {
		must(os.Lchown(p, uid, gid))
	}
}

// ftpStep is one operation of the FTP sequence.
type ftpStep struct {
	name string
	run  func(f *ftpSide) string
}

// stor uploads data to path on session A.
func (f *ftpSide) stor(path string, data []byte) string {
	reps, _, err := f.a.transfer("STOR "+path, data)
	return xfer(reps, nil, err, digit, false)
}

// retr downloads path on session A.
func (f *ftpSide) retr(c *rawFTP, path string) string {
	reps, data, err := c.transfer("RETR "+path, nil)
	return xfer(reps, data, err, digit, true)
}

// list runs a LIST (or NLST) command and shows the parsed lines.
func (f *ftpSide) list(line string, nlink bool) string {
	reps, data, err := f.a.transfer(line, nil)
	s := xfer(reps, nil, err, digit, false)
	if len(reps) < 2 {
		return s
	}
	lines := strings.Split(string(data), "\n")
	if strings.HasPrefix(line, "NLST") {
		var names []string
		for _, n := range lines {
			if n = strings.TrimRight(n, "\r"); n != "" && !hasCtl(n) { // control characters: compared apart
				names = append(names, fmt.Sprintf("%q", n))
			}
		}
		sort.Strings(names)
		return s + " " + strings.Join(names, " ")
	}
	return s + " " + parseList(lines, nlink)
}

// resetTransfer starts line on session A, sends upload (or reads 4 KiB of
// a download), then resets the data connection (RST, not FIN) and shows
// the replies: the first by its digit, the final exactly (426).
func (f *ftpSide) resetTransfer(line string, upload []byte) string {
	dc, rep, err := f.a.pasv()
	if err != nil || dc == nil {
		return one(rep, err, exact)
	}
	defer dc.Close()
	_ = dc.SetDeadline(time.Now().Add(ftpTimeout))
	first, err := f.a.cmd(line)
	if err != nil || first.Code >= 200 {
		return one(first, err, exact)
	}
	if upload != nil {
		_, err = dc.Write(upload)
		time.Sleep(200 * time.Millisecond) // the server reads it
	} else {
		_, err = io.ReadFull(dc, make([]byte, 4096))
	}
	if err != nil {
		return "data: " + err.Error()
	}
	if err := dc.(*net.TCPConn).SetLinger(0); err != nil {
		return "linger: " + err.Error()
	}
	dc.Close()
	final, err := f.a.read()
	return digit(first) + "/" + one(final, err, exact)
}

// c sends a command on session A and shows its reply with show.
func (f *ftpSide) c(line string, show func(ftpReply) string) string {
	r, err := f.a.cmd(line)
	return one(r, err, show)
}

// text is a 213 reply's code and text (the text is data: a size, a
// time); any other reply is shown by its code alone, as message texts
// are not compared.
func text(r ftpReply) string {
	if r.Code != 213 {
		return exact(r)
	}
	return fmt.Sprintf("%d %q", r.Code, strings.Join(r.Lines, "|"))
}

// quoted is the code and the quoted path of a 257 reply.
func quoted(r ftpReply) string {
	s := strings.Join(r.Lines, " ")
	i := strings.IndexByte(s, '"')
	j := strings.LastIndexByte(s, '"')
	if r.Code != 257 || i < 0 || j <= i {
		return exact(r)
	}
	return fmt.Sprintf("%d %s", r.Code, s[i:j+1])
}

// mdtmText is a 213 reply's timestamp, "now" when within ten minutes.
func mdtmText(r ftpReply) string {
	if r.Code != 213 {
		return exact(r)
	}
	v := strings.TrimSpace(strings.Join(r.Lines, ""))
	if t, err := time.Parse("20060102150405", v); err == nil {
		if d := time.Since(t); d < 10*time.Minute && d > -10*time.Minute {
			return "213 now"
		}
	}
	return "213 " + v
}

// statLines shows a STAT <path> reply: its code and the listing inside.
func statLines(r ftpReply) string {
	if len(r.Lines) < 2 {
		return text(r)
	}
	return fmt.Sprintf("%d %s", r.Code, parseList(r.Lines[1:len(r.Lines)-1], false))
}

// vsftpdFeatures are the FEAT lines vsftpd 3.0.3 sends here.
var vsftpdFeatures = []string{"EPRT", "EPSV", "MDTM", "PASV", "REST STREAM", "SIZE", "TVFS"}

func ftpSteps() []ftpStep {
	data1 := []byte("hello world\n")
	big := pattern(3<<20+77, 9)
	steps := []ftpStep{
		// Login and session basics, on a connection of their own.
		{"command before login (PWD)", func(f *ftpSide) string {
			c, _, err := dialRawFTP(f.addr)
			if err != nil {
				return "error: " + err.Error()
			}
			defer c.Close()
			r, err := c.cmd("PWD")
			return one(r, err, exact)
		}},
		{"USER, PASS with a wrong password", func(f *ftpSide) string {
			c, _, err := dialRawFTP(f.addr)
			if err != nil {
				return "error: " + err.Error()
			}
			defer c.Close()
			r1, err := c.cmd("USER " + f.user)
			if err != nil {
				return "error: " + err.Error()
			}
			r2, err := c.cmd("PASS wrong-" + f.pass)
			return exact(r1) + "/" + one(r2, err, exact)
		}},
		{"PASS before USER, then a login", func(f *ftpSide) string {
			c, _, err := dialRawFTP(f.addr)
			if err != nil {
				return "error: " + err.Error()
			}
			defer c.Close()
			r1, err := c.cmd("PASS " + f.pass)
			if err != nil {
				return "error: " + err.Error()
			}
			r2, err := c.cmd("USER " + f.user)
			if err != nil {
				return exact(r1) + " error: " + err.Error()
			}
			r3, err := c.cmd("PASS " + f.pass)
			return exact(r1) + "/" + exact(r2) + "/" + one(r3, err, exact)
		}},
		{"SYST", func(f *ftpSide) string { return f.c("SYST", exact) }},
		{"FEAT lists vsftpd's features", func(f *ftpSide) string {
			r, err := f.a.cmd("FEAT")
			if err != nil {
				return "error: " + err.Error()
			}
			have := map[string]bool{}
			for _, l := range r.Lines {
				have[strings.ToUpper(strings.TrimSpace(l))] = true
			}
			var l []string
			for _, feat := range vsftpdFeatures {
				l = append(l, fmt.Sprintf("%s:%v", feat, have[feat]))
			}
			return exact(r) + " " + strings.Join(l, " ")
		}},
		{"PWD", func(f *ftpSide) string { return f.c("PWD", quoted) }},
		{"TYPE I", func(f *ftpSide) string { return f.c("TYPE I", digit) }},
		{"NOOP", func(f *ftpSide) string { return f.c("NOOP", digit) }},
		{"MODE S, STRU F", func(f *ftpSide) string { return f.c("MODE S", digit) + "/" + f.c("STRU F", digit) }},
		{"MODE s, STRU f, TYPE i (lower case)", func(f *ftpSide) string {
			return f.c("MODE s", digit) + "/" + f.c("STRU f", digit) + "/" + f.c("TYPE i", digit)
		}},
		{"MODE Z (unsupported)", func(f *ftpSide) string { return f.c("MODE Z", digit) }},
		{"PBSZ 0, PROT P without TLS (refused)", func(f *ftpSide) string { return f.c("PBSZ 0", digit) + "/" + f.c("PROT P", digit) }},
		{"unknown command XYZZY", func(f *ftpSide) string { return f.c("XYZZY", digit) }},
		{"HELP", func(f *ftpSide) string { return f.c("HELP", digit) }},
		{"ALLO 100", func(f *ftpSide) string { return f.c("ALLO 100", digit) }},
		{"ALLO 10 R 5, ALLO, ALLO abc, ALLO -1", func(f *ftpSide) string {
			return f.c("ALLO 10 R 5", digit) + "/" + f.c("ALLO", digit) + "/" + f.c("ALLO abc", digit) + "/" + f.c("ALLO -1", digit)
		}},

		// Directories.
		{"MKD /d", func(f *ftpSide) string { return f.c("MKD /d", quoted) }},
		{"MKD /d again (exists)", func(f *ftpSide) string { return f.c("MKD /d", exact) }},
		{"MKD /p/q (missing parent)", func(f *ftpSide) string { return f.c("MKD /p/q", exact) }},
		{"MKD relative d/sub", func(f *ftpSide) string { return f.c("MKD d/sub", quoted) }},
		{"CWD /d", func(f *ftpSide) string { return f.c("CWD /d", digit) }},
		{"PWD in /d", func(f *ftpSide) string { return f.c("PWD", quoted) }},
		{"MKD sub2 (relative to /d)", func(f *ftpSide) string { return f.c("MKD sub2", quoted) }},
		{"CDUP", func(f *ftpSide) string { return f.c("CDUP", digit) + " " + f.c("PWD", quoted) }},
		{"XCWD /d, XPWD, XCUP (RFC 775)", func(f *ftpSide) string {
			return f.c("XCWD /d", digit) + " " + f.c("XPWD", quoted) + " " + f.c("XCUP", digit) + " " + f.c("XPWD", quoted)
		}},
		{"CWD /missing", func(f *ftpSide) string { return f.c("CWD /missing", exact) }},
		{"CWD /fix/file.txt (a file)", func(f *ftpSide) string { return f.c("CWD /fix/file.txt", exact) }},
		{"CWD /fix/lnd (link to a directory)", func(f *ftpSide) string {
			return f.c("CWD /fix/lnd", digit) + " " + f.c("PWD", quoted) + " " + f.c("CWD /", digit)
		}},

		// Uploads and downloads.
		{"STOR /d/f1", func(f *ftpSide) string { return f.stor("/d/f1", data1) }},
		{"SIZE /d/f1", func(f *ftpSide) string { return f.c("SIZE /d/f1", text) }},
		{"RETR /d/f1", func(f *ftpSide) string { return f.retr(f.a, "/d/f1") }},
		{"STOR /nodir/f (missing parent)", func(f *ftpSide) string { return f.stor("/nodir/f", data1) }},
		{"STOR /d (a directory)", func(f *ftpSide) string { return f.stor("/d", data1) }},
		{"STOR /d/dir2 (a directory) after an upload into /d", func(f *ftpSide) string {
			return f.c("MKD /d/dir2", digit) + " " + f.stor("/d/f3", data1) + " " + f.stor("/d/dir2", data1)
		}},
		{"RETR /missing", func(f *ftpSide) string { return f.retr(f.a, "/missing") }},
		{"RETR /d (a directory)", func(f *ftpSide) string { return f.retr(f.a, "/d") }},
		{"SIZE /missing", func(f *ftpSide) string { return f.c("SIZE /missing", exact) }},
		{"SIZE /d (a directory)", func(f *ftpSide) string { return f.c("SIZE /d", exact) }},
		{"MDTM /d/f1", func(f *ftpSide) string { return f.c("MDTM /d/f1", mdtmText) }},
		{"MDTM /missing", func(f *ftpSide) string { return f.c("MDTM /missing", exact) }},
		{"MDTM /d (a directory)", func(f *ftpSide) string { return f.c("MDTM /d", exact) }},
		{"MDTM / (the root)", func(f *ftpSide) string { return f.c("MDTM /", exact) }},
		{"MDTM /fix/lnd (link to a directory)", func(f *ftpSide) string { return f.c("MDTM /fix/lnd", exact) }},
		{"MDTM with a time sets it (mdtm_write)", func(f *ftpSide) string {
			return f.c("MDTM 20040109113320 /d/f1", digit) + " " + f.c("MDTM /d/f1", mdtmText)
		}},
		// The epoch is a time like any other: upgate's agent protocol once
		// took 0 for "leave unchanged" and kept the old mtime.
		{"MDTM with the Unix epoch sets it", func(f *ftpSide) string {
			return f.stor("/d/ep", data1) + " " + f.c("MDTM 19700101000000 /d/ep", digit) + " " + f.c("MDTM /d/ep", mdtmText)
		}},
		{"NLST /d/f1/.. (.. after a file)", func(f *ftpSide) string { return f.list("NLST /d/f1/..", false) }},
		{"TYPE A, REST 2, RETR /d/f1 (a resumed download in ASCII mode), TYPE I", func(f *ftpSide) string {
			return f.c("TYPE A", exact) + " " + f.c("REST 2", exact) + " " + f.retr(f.a, "/d/f1") + " " + f.c("TYPE I", exact)
		}},
		{"MKD /dt, MDTM with a time on it (a directory), RMD /dt", func(f *ftpSide) string {
			return f.c("MKD /dt", exact) + " " + f.c("MDTM 20040109113320 /dt", exact) + " " + f.c("RMD /dt", exact)
		}},
		{"APPE /d/f1", func(f *ftpSide) string {
			reps, _, err := f.a.transfer("APPE /d/f1", []byte("tail"))
			return xfer(reps, nil, err, digit, false) + " " + f.retr(f.a, "/d/f1")
		}},
		{"APPE /d/new (creates)", func(f *ftpSide) string {
			reps, _, err := f.a.transfer("APPE /d/new", []byte("appended new"))
			return xfer(reps, nil, err, digit, false) + " " + f.retr(f.a, "/d/new")
		}},
		{"REST 2 + STOR /d/f1 (resume in place)", func(f *ftpSide) string {
			return f.c("REST 2", exact) + " " + f.stor("/d/f1", []byte("XY")) + " " + f.retr(f.a, "/d/f1")
		}},
		{"REST 3 + RETR /d/f1", func(f *ftpSide) string { return f.c("REST 3", exact) + " " + f.retr(f.a, "/d/f1") }},
		{"REST 1000 + RETR /d/f1 (past EOF)", func(f *ftpSide) string { return f.c("REST 1000", exact) + " " + f.retr(f.a, "/d/f1") }},
		{"REST abc, REST, REST 99999999999999999999 (taken as 0)", func(f *ftpSide) string {
			return f.c("REST abc", exact) + " " + f.c("REST", exact) + " " + f.c("REST 99999999999999999999", exact) + " " + f.retr(f.a, "/d/f1")
		}},
		{"REST -5 + RETR /d/f1 (taken as 0)", func(f *ftpSide) string { return f.c("REST -5", exact) + " " + f.retr(f.a, "/d/f1") }},
		{"REST abc + STOR /d/f1 (replaces, as a STOR)", func(f *ftpSide) string {
			return f.c("REST abc", exact) + " " + f.stor("/d/f1", []byte("xy")) + " " + f.retr(f.a, "/d/f1")
		}},
		{"STOR over /d/f1 (replace)", func(f *ftpSide) string { return f.stor("/d/f1", []byte("replaced\n")) + " " + f.retr(f.a, "/d/f1") }},
		{"STOR /big.bin 3 MiB, RETR it", func(f *ftpSide) string { return f.stor("/big.bin", big) + " " + f.retr(f.a, "/big.bin") }},
		{"TYPE A, SIZE /d/f1", func(f *ftpSide) string {
			return f.c("TYPE A", digit) + " " + f.c("SIZE /d/f1", text) + " " + f.c("TYPE I", digit)
		}},
		{"STOR empty file", func(f *ftpSide) string { return f.stor("/empty", []byte{}) + " " + f.c("SIZE /empty", text) }},

		// Another session during an upload.
		{"A: STOR /up.bin, 5 bytes sent, not finished", func(f *ftpSide) string {
			dc, rep, err := f.a.pasv()
			if err != nil || dc == nil {
				return one(rep, err, exact)
			}
			first, err := f.a.cmd("STOR /up.bin")
			if err != nil || first.Code >= 200 {
				dc.Close()
				return one(first, err, exact)
			}
			_ = dc.SetDeadline(time.Now().Add(ftpTimeout))
			if _, err := dc.Write([]byte("abcde")); err != nil {
				dc.Close()
				return "error: " + err.Error()
			}
			f.pending, f.pendingRepl = dc, first
			time.Sleep(200 * time.Millisecond) // let the server write it
			return digit(first)
		}},
		{"B: SIZE /up.bin while A uploads it", func(f *ftpSide) string {
			r, err := f.b.cmd("SIZE /up.bin")
			return one(r, err, text)
		}},
		{"A: finish the upload", func(f *ftpSide) string {
			if f.pending == nil {
				return "no upload"
			}
			f.pending.Close()
			f.pending = nil
			r, err := f.a.read()
			return one(r, err, digit) + " " + f.retr(f.b, "/up.bin")
		}},

		// Data connections the client resets: 426, as vsftpd; the upload
		// is not committed (compared in deliberateDiffs), and the next
		// one is.
		{"STOR /reset.bin, data connection reset", func(f *ftpSide) string {
			s := f.resetTransfer("STOR /reset.bin", []byte("partial data"))
			r, err := f.b.cmd("SIZE /reset.bin")
			return s + " B: SIZE " + one(r, err, text)
		}},
		{"STOR /reset.bin again, whole", func(f *ftpSide) string {
			return f.stor("/reset.bin", data1) + " " + f.retr(f.b, "/reset.bin")
		}},
		{"RETR a 16 MiB file, data connection reset", func(f *ftpSide) string {
			return f.stor("/reset16.bin", pattern(16<<20, 3)) + " " + f.resetTransfer("RETR /reset16.bin", nil) + " " + f.c("DELE /reset16.bin", digit)
		}},

		// Modes.
		{"SITE CHMOD 600 /d/f1", func(f *ftpSide) string { return f.c("SITE CHMOD 600 /d/f1", digit) }},
		{"SITE CHMOD 4755 /d/new", func(f *ftpSide) string { return f.c("SITE CHMOD 4755 /d/new", digit) }},
		{"SITE CHMOD 1777 /d/sub", func(f *ftpSide) string { return f.c("SITE CHMOD 1777 /d/sub", digit) }},
		{"SITE CHMOD 2775 /d/sub2 (setgid, a directory)", func(f *ftpSide) string { return f.c("SITE CHMOD 2775 /d/sub2", digit) }},
		{"LIST /d after 2775", func(f *ftpSide) string { return f.list("LIST /d", false) }},
		{"SITE CHMOD 700 /d/sub2", func(f *ftpSide) string { return f.c("SITE CHMOD 700 /d/sub2", digit) }},
		{"SITE CHMOD 644 /missing", func(f *ftpSide) string { return f.c("SITE CHMOD 644 /missing", exact) }},
		{"LIST /d", func(f *ftpSide) string { return f.list("LIST /d", false) }},

		// Delete, rename.
		{"DELE /missing", func(f *ftpSide) string { return f.c("DELE /missing", exact) }},
		{"DELE /d (a directory)", func(f *ftpSide) string { return f.c("DELE /d", exact) }},
		{"RMD /d (not empty)", func(f *ftpSide) string { return f.c("RMD /d", exact) }},
		{"RMD /missing", func(f *ftpSide) string { return f.c("RMD /missing", exact) }},
		{"RMD /d/f1 (a file)", func(f *ftpSide) string { return f.c("RMD /d/f1", exact) }},
		{"MKD /e, RMD /e", func(f *ftpSide) string { return f.c("MKD /e", quoted) + " " + f.c("RMD /e", digit) }},
		// The working directory follows a rename of it or of a
		// directory above it, as vsftpd's (the kernel's) does: upgate's
		// kept the old name (TestFTPRandom).
		{"CWD /e2/in, RNFR /e2, RNTO /e3, PWD, MKD x", func(f *ftpSide) string {
			return f.c("MKD /e2", quoted) + " " + f.c("MKD /e2/in", quoted) + " " + f.c("CWD /e2/in", digit) + " " +
				f.c("RNFR /e2", exact) + " " + f.c("RNTO /e3", digit) + " " + f.c("PWD", quoted) + " " + f.c("MKD x", quoted) + " " +
				f.c("CWD /", digit) + " " + f.c("RMD /e3/in/x", digit) + " " + f.c("RMD /e3/in", digit) + " " + f.c("RMD /e3", digit)
		}},
		// The same when RNFR names the directory through a link: the
		// working directory is held with its links resolved.
		{"CWD /loop/d/in2, RNFR /loop/dl/in2, RNTO /loop/d/in3, PWD", func(f *ftpSide) string {
			return f.c("MKD /loop/d/in2", quoted) + " " + f.c("CWD /loop/d/in2", digit) + " " +
				f.c("RNFR /loop/dl/in2", exact) + " " + f.c("RNTO /loop/d/in3", digit) + " " + f.c("PWD", quoted) + " " +
				f.c("CWD /", digit) + " " + f.c("RMD /loop/d/in3", digit)
		}},
		{"RNFR /d/f1, RNTO /d/f1b", func(f *ftpSide) string { return f.c("RNFR /d/f1", exact) + " " + f.c("RNTO /d/f1b", digit) }},
		// RNFR's relative name is resolved when RNFR is answered, not
		// again at the RNTO after a CDUP (whyRnfrNow).
		{rowRnfrNow, func(f *ftpSide) string {
			return f.c("CWD /d", digit) + " " + f.c("RNFR f1b", exact) + " " + f.c("CDUP", digit) + " " + f.c("RNTO /d/f1c", exact) + " " +
				f.c("RNFR /d/f1c", exact) + " " + f.c("RNTO /d/f1b", exact) + " " + f.c("SIZE /d/f1b", exact)
		}},
		{rowCwdRemoved, func(f *ftpSide) string {
			return f.c("MKD /cwr", exact) + " " + f.c("CWD /cwr", digit) + " " + f.c("RMD /cwr", exact) + " " + f.c("PWD", quoted) + " " +
				f.c("MKD /cwr", exact) + " " + f.stor("f", []byte("F")) + " " + f.c("CWD /", digit) + " " + f.c("SIZE /cwr/f", text) + " " + f.c("DELE /cwr/f", exact) + " " + f.c("RMD /cwr", exact)
		}},
		{"RNFR /missing", func(f *ftpSide) string { return f.c("RNFR /missing", exact) }},
		{"RNTO without RNFR", func(f *ftpSide) string { return f.c("RNTO /x", digit) }},
		{"RNFR /d/new, RNTO over existing /d/f1b", func(f *ftpSide) string {
			return f.c("RNFR /d/new", exact) + " " + f.c("RNTO /d/f1b", digit) + " " + f.retr(f.a, "/d/f1b")
		}},
		{"RNFR /d/f1b, RNTO over directory /d/sub2", func(f *ftpSide) string {
			return f.c("RNFR /d/f1b", exact) + " " + f.c("RNTO /d/sub2", exact)
		}},
		{"RNFR /d/sub2, RNTO into its own subdir", func(f *ftpSide) string {
			return f.c("RNFR /d/sub2", exact) + " " + f.c("RNTO /d/sub2/x", exact)
		}},
		{"RNFR /d/sub2, RNTO /d/sub3 (directory)", func(f *ftpSide) string {
			return f.c("RNFR /d/sub2", exact) + " " + f.c("RNTO /d/sub3", digit)
		}},
		{"RNFR /d/f1b, RNTO into missing dir", func(f *ftpSide) string {
			return f.c("RNFR /d/f1b", exact) + " " + f.c("RNTO /nodir/x", exact)
		}},
		// An RNTO ends the rename, failed or not: upgate's left RNFR
		// armed, and the next RNTO moved /d/f1b (TestFTPRandom).
		{"RNTO /d/f9 after that failed RNTO", func(f *ftpSide) string {
			return f.c("RNTO /d/f9", exact) + " " + f.c("SIZE /d/f1b", exact) + " " + f.c("SIZE /d/f9", exact)
		}},
		{"DELE /empty", func(f *ftpSide) string { return f.c("DELE /empty", digit) + " " + f.c("SIZE /empty", exact) }},

		// Links (made on disk: FTP cannot make them).
		{"LIST /fix", func(f *ftpSide) string { return f.list("LIST /fix", false) }},
		{"LIST /fix/lnd (link to a directory)", func(f *ftpSide) string { return f.list("LIST /fix/lnd", false) }},
		{"LIST /fix/ln (link to a file)", func(f *ftpSide) string { return f.list("LIST /fix/ln", false) }},
		{"LIST /fix/file.txt (a file)", func(f *ftpSide) string { return f.list("LIST /fix/file.txt", false) }},
		{"LIST /missing", func(f *ftpSide) string { return f.list("LIST /missing", false) }},
		{"LIST -a /fix", func(f *ftpSide) string { return f.list("LIST -a /fix", false) }},
		// ls options: vsftpd takes any first word starting with "-" for
		// options and lists the path (-R too: ls_recurse_enable is off).
		{"LIST -t /fix", func(f *ftpSide) string { return f.list("LIST -t /fix", false) }},
		{"LIST -1 /fix", func(f *ftpSide) string { return f.list("LIST -1 /fix", false) }},
		{"LIST -d /fix", func(f *ftpSide) string { return f.list("LIST -d /fix", false) }},
		{"LIST -R (working directory)", func(f *ftpSide) string { return f.list("LIST -R", false) }},
		{"NLST -t /fix", func(f *ftpSide) string { return f.list("NLST -t /fix", false) }},
		{"NLST -1 /fix", func(f *ftpSide) string { return f.list("NLST -1 /fix", false) }},
		{"NLST -l /fix (LIST's lines)", func(f *ftpSide) string {
			reps, data, err := f.a.transfer("NLST -l /fix", nil)
			s := xfer(reps, nil, err, digit, false)
			if len(reps) < 2 {
				return s
			}
			return s + " " + parseList(strings.Split(string(data), "\n"), false)
		}},
		{"STAT -la /fix", func(f *ftpSide) string { return f.c("STAT -la /fix", statLines) }},
		{"STAT -l /fix/file.txt", func(f *ftpSide) string { return f.c("STAT -l /fix/file.txt", statLines) }},
		{"NLST /fix", func(f *ftpSide) string { return f.list("NLST /fix", false) }},
		{"RETR /fix/ln (through the link)", func(f *ftpSide) string { return f.retr(f.a, "/fix/ln") }},
		{"RETR /fix/dang (dangling link)", func(f *ftpSide) string { return f.retr(f.a, "/fix/dang") }},
		{"SIZE /fix/ln", func(f *ftpSide) string { return f.c("SIZE /fix/ln", text) }},
		{"MDTM /fix/file.txt", func(f *ftpSide) string { return f.c("MDTM /fix/file.txt", mdtmText) }},
		{"STAT /fix (over the control connection)", func(f *ftpSide) string { return f.c("STAT /fix", statLines) }},
		{"STAT /fix/file.txt", func(f *ftpSide) string { return f.c("STAT /fix/file.txt", statLines) }},
		// A link whose target is missing is listed as the link, and STAT
		// of a link shows the link, as LIST does (TestFTPRandom).
		{"LIST /fix/dang, NLST /fix/dang (a dangling link)", func(f *ftpSide) string {
			return f.list("LIST /fix/dang", false) + " " + f.list("NLST /fix/dang", false)
		}},
		// A link in a loop lists as a link, as a dangling one does
		// (TestFTPRandom seed 261: upgate's NLST answered 450).
		{"LIST, NLST, STAT /loop/self (a link to itself)", func(f *ftpSide) string {
			return f.list("LIST /loop/self", false) + " " + f.list("NLST /loop/self", false) + " " + f.c("STAT /loop/self", statLines)
		}},
		{"LIST, NLST /loop/nf (a link through a file)", func(f *ftpSide) string {
			return f.list("LIST /loop/nf", false) + " " + f.list("NLST /loop/nf", false)
		}},
		{"STAT /fix/ln, STAT /fix/dang", func(f *ftpSide) string {
			return f.c("STAT /fix/ln", statLines) + " " + f.c("STAT /fix/dang", statLines)
		}},
		// A trailing slash: the path must be a directory, as POSIX
		// resolves it; a file so named is refused and left as it was,
		// nothing is created, a link to a directory is not removed.
		{"SIZE, MDTM, RETR /fix/file.txt/ (a file with a slash)", func(f *ftpSide) string {
			return f.c("SIZE /fix/file.txt/", exact) + " " + f.c("MDTM /fix/file.txt/", exact) + " " + f.retr(f.a, "/fix/file.txt/")
		}},
		{"LIST /fix/sub/, NLST /fix/lnd/ (directories with a slash)", func(f *ftpSide) string {
			return f.list("LIST /fix/sub/", false) + " " + f.list("NLST /fix/lnd/", false)
		}},
		{"STOR /d/ts/ (missing, with a slash)", func(f *ftpSide) string {
			return f.stor("/d/ts/", data1) + " " + f.c("SIZE /d/ts", exact)
		}},
		{"STOR /d/f3/ (a file, with a slash)", func(f *ftpSide) string {
			return f.stor("/d/f3/", []byte("replaced?")) + " " + f.retr(f.a, "/d/f3")
		}},
		{"DELE /d/f3/ (a file, with a slash)", func(f *ftpSide) string {
			return f.c("DELE /d/f3/", exact) + " " + f.c("SIZE /d/f3", text)
		}},
		{"DELE /fix/lnd/ (link to a directory, with a slash)", func(f *ftpSide) string {
			return f.c("DELE /fix/lnd/", exact) + " " + f.list("LIST /fix/lnd", false)
		}},
		{"RNFR /d/f3/, RNTO /d/f4", func(f *ftpSide) string {
			return f.c("RNFR /d/f3/", exact) + " " + f.c("RNTO /d/f4", exact) + " " + f.c("SIZE /d/f3", text)
		}},
		{"RNFR /d/f3, RNTO /d/f5/", func(f *ftpSide) string {
			return f.c("RNFR /d/f3", exact) + " " + f.c("RNTO /d/f5/", exact) + " " + f.c("SIZE /d/f3", text) + " " + f.c("SIZE /d/f5", exact)
		}},
		{"RNFR /fix/lnd/, RNTO /fix/lnd2 (link to a directory)", func(f *ftpSide) string {
			return f.c("RNFR /fix/lnd/", exact) + " " + f.c("RNTO /fix/lnd2", exact) + " " + f.list("LIST /fix/lnd", false)
		}},
		{"MKD /d/m/, RNFR /d/m/, RNTO /d/m2/ (a directory)", func(f *ftpSide) string {
			return f.c("MKD /d/m/", exact) + " " + f.c("RNFR /d/m/", exact) + " " + f.c("RNTO /d/m2/", digit) + " " + f.c("RMD /d/m2/", digit)
		}},
		{"SITE CHMOD 600 /d/f3/, MDTM with a time /d/f3/", func(f *ftpSide) string {
			return f.c("SITE CHMOD 600 /d/f3/", exact) + " " + f.c("MDTM 20040109113320 /d/f3/", exact) + " " + f.c("MDTM /d/f3", mdtmText)
		}},
		{"LIST /fix/file.txt/ (a file with a slash)", func(f *ftpSide) string { return f.list("LIST /fix/file.txt/", false) }},
		{"DELE /fix/lnd (link to a directory)", func(f *ftpSide) string {
			return f.c("DELE /fix/lnd", digit) + " " + f.list("LIST /fix/sub", false)
		}},
		{"DELE /fix/dang (dangling link)", func(f *ftpSide) string { return f.c("DELE /fix/dang", digit) }},

		// Names.
		{"MKD /names", func(f *ftpSide) string { return f.c("MKD /names", quoted) }},
		{"STOR names with spaces, unicode, invalid UTF-8, quotes", func(f *ftpSide) string {
			var l []string
			for i, n := range namesOK {
				if strings.HasSuffix(n, " ") {
					continue // FTP servers trim trailing spaces differently; not a name an FTP client can send
				}
				l = append(l, fmt.Sprintf("%q:%s", n, f.stor("/names/"+n, fmt.Appendf(nil, "name %d\n", i))))
			}
			return strings.Join(l, " ")
		}},
		{"STOR 255-byte name", func(f *ftpSide) string { return f.stor("/names/"+long255, []byte("long")) }},
		{"STOR 256-byte name", func(f *ftpSide) string { return f.stor("/names/"+long256, []byte("too long")) }},
		{"SIZE invalid UTF-8 name", func(f *ftpSide) string { return f.c("SIZE /names/bad\xff\xfe.txt", text) }},
		{"RNFR/RNTO invalid UTF-8 name", func(f *ftpSide) string {
			return f.c("RNFR /names/bad\xff\xfe.txt", exact) + " " + f.c("RNTO /names/still\xffbad", digit)
		}},
		{"MKD name with \\x01", func(f *ftpSide) string { return f.c("MKD /names/ctl\x01dir", exact) }},
		{"STOR name with DEL", func(f *ftpSide) string { return f.stor("/names/del\x7fx", []byte("del")) }},
		{"NLST /names", func(f *ftpSide) string { return f.list("NLST /names", false) }},
		{"LIST /names", func(f *ftpSide) string { return f.list("LIST /names", false) }},
		{"NLST /names: control characters", func(f *ftpSide) string {
			reps, data, err := f.a.transfer("NLST /names", nil)
			var l []string
			for _, n := range strings.Split(string(data), "\n") {
				if n = strings.TrimRight(n, "\r"); hasCtl(n) {
					l = append(l, fmt.Sprintf("%q", n))
				}
			}
			sort.Strings(l)
			return xfer(reps, nil, err, digit, false) + " " + fmt.Sprint(l)
		}},

		// Passive modes and listings at the end.
		{"EPSV", func(f *ftpSide) string {
			r, err := f.a.cmd("EPSV")
			return one(r, err, exact)
		}},
		{"EPSV ALL, then PASV", func(f *ftpSide) string {
			c, _, err := dialRawFTP(f.addr)
			if err != nil {
				return "error: " + err.Error()
			}
			defer c.Close()
			if _, err := c.cmd("USER " + f.user); err != nil {
				return "error: " + err.Error()
			}
			if r, err := c.cmd("PASS " + f.pass); err != nil || r.Code != 230 {
				return "login: " + one(r, err, exact)
			}
			r1, err := c.cmd("EPSV ALL")
			if err != nil {
				return "error: " + err.Error()
			}
			r2, err := c.cmd("PASV")
			return exact(r1) + "/" + one(r2, err, exact)
		}},
		{"PORT (active mode) LIST /d", func(f *ftpSide) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return "error: " + err.Error()
			}
			defer l.Close()
			p := l.Addr().(*net.TCPAddr).Port
			r, err := f.a.cmd(fmt.Sprintf("PORT 127,0,0,1,%d,%d", p>>8, p&255))
			if err != nil || r.Code != 200 {
				return "PORT: " + one(r, err, exact)
			}
			first, err := f.a.cmd("NLST /d")
			if err != nil || first.Code >= 200 {
				return one(first, err, exact)
			}
			_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(ftpTimeout))
			dc, err := l.Accept()
			if err != nil {
				return "accept: " + err.Error()
			}
			_ = dc.SetDeadline(time.Now().Add(ftpTimeout))
			// The whole listing, to the server's close: one Read may
			// return only its first write.
			buf, _ := io.ReadAll(io.LimitReader(dc, 1<<20))
			dc.Close()
			final, err := f.a.read()
			names := strings.Fields(string(buf))
			sort.Strings(names)
			return digit(first) + "/" + one(final, err, digit) + " " + strings.Join(names, " ")
		}},
		{"LIST /", func(f *ftpSide) string { return f.list("LIST /", false) }},
		{"LIST /: link counts", func(f *ftpSide) string { return f.list("LIST /", true) }},
		{"NLST /d", func(f *ftpSide) string { return f.list("NLST /d", false) }},

		// Wildcards in the last component (classic clients' mget and
		// mdelete send NLST *.txt): the matches in the directory before
		// it; dotfiles only for a pattern starting with "."; a directory
		// is listed outright, whatever its name.
		{"MKD /g, files to match", func(f *ftpSide) string {
			l := []string{f.c("MKD /g", digit), f.c("MKD /g/sub.txt", digit), f.c("MKD /g/d*", digit)}
			for _, n := range []string{"one.txt", "two.txt", "three.dat", ".hid.txt", "a.txt.txt", "br[x].txt", "d*/in", "x*y", "xzy"} {
				l = append(l, f.stor("/g/"+n, []byte(n)))
			}
			return strings.Join(l, " ")
		}},
		{"CWD /g, NLST *.txt", func(f *ftpSide) string {
			return f.c("CWD /g", digit) + " " + f.list("NLST *.txt", false)
		}},
		{"LIST * (working directory /g)", func(f *ftpSide) string { return f.list("LIST *", false) + " " + f.c("CWD /", digit) }},
		{"NLST /g/*.txt", func(f *ftpSide) string { return f.list("NLST /g/*.txt", false) }},
		{"NLST g/t*", func(f *ftpSide) string { return f.list("NLST g/t*", false) }},
		{"LIST /g/t*", func(f *ftpSide) string { return f.list("LIST /g/t*", false) }},
		{"NLST /g/???.txt", func(f *ftpSide) string { return f.list("NLST /g/???.txt", false) }},
		{"LIST /g/{one,two}.txt", func(f *ftpSide) string { return f.list("LIST /g/{one,two}.txt", false) }},
		{"NLST /g/.*", func(f *ftpSide) string { return f.list("NLST /g/.*", false) }},
		{"NLST /g/br[x]*", func(f *ftpSide) string { return f.list("NLST /g/br[x]*", false) }},
		{"NLST /g/x*y (a file so named matches others too)", func(f *ftpSide) string { return f.list("NLST /g/x*y", false) }},
		{"NLST -a /g/*.txt", func(f *ftpSide) string { return f.list("NLST -a /g/*.txt", false) }},
		{"NLST -l /g/{t,o}*", func(f *ftpSide) string {
			reps, data, err := f.a.transfer("NLST -l /g/{t,o}*", nil)
			s := xfer(reps, nil, err, digit, false)
			if len(reps) < 2 {
				return s
			}
			return s + " " + parseList(strings.Split(string(data), "\n"), false)
		}},
		{"NLST /g/d* (a directory so named)", func(f *ftpSide) string { return f.list("NLST /g/d*", false) }},
		{"LIST -l /g/*.dat", func(f *ftpSide) string { return f.list("LIST -l /g/*.dat", false) }},
		{"NLST /g/../g/o*", func(f *ftpSide) string { return f.list("NLST /g/../g/o*", false) }},
		{"NLST /../../g/o*", func(f *ftpSide) string { return f.list("NLST /../../g/o*", false) }},
		{"STAT /g/*.txt", func(f *ftpSide) string { return f.c("STAT /g/*.txt", statLines) }},
		{"NLST /g/*.zip (no match)", func(f *ftpSide) string { return f.list("NLST /g/*.zip", false) }},
		{"STAT /g/*.zip (no match)", func(f *ftpSide) string { return f.c("STAT /g/*.zip", statLines) }},
		{"NLST /nodir/*.txt (missing directory)", func(f *ftpSide) string { return f.list("NLST /nodir/*.txt", false) }},
		{"LIST /g/one.txt/* (a file's directory)", func(f *ftpSide) string { return f.list("LIST /g/one.txt/*", false) }},
		{"LIST /g/*.txt/ (a pattern with a slash)", func(f *ftpSide) string { return f.list("LIST /g/*.txt/", false) }},
		{"LIST /*/one.txt (a pattern not last)", func(f *ftpSide) string { return f.list("LIST /*/one.txt", false) }},
	}
	steps = append(steps, ftpPermSteps()...)
	return append(steps, ftpStep{"QUIT", func(f *ftpSide) string { return f.c("QUIT", exact) }})
}

// dialFTPSide logs sessions A and B in.
func dialFTPSide(t *testing.T, f *ftpSide) {
	t.Helper()
	login := func() *rawFTP {
		c, greet, err := dialRawFTP(f.addr)
		if err != nil || greet.Code != 220 {
			t.Fatalf("%s: connect: %v %v", f.name, greet, err)
		}
		t.Cleanup(func() { c.Close() })
		if r, err := c.cmd("USER " + f.user); err != nil || r.Code != 331 {
			t.Fatalf("%s: USER: %v %v", f.name, r, err)
		}
		if r, err := c.cmd("PASS " + f.pass); err != nil || r.Code != 230 {
			t.Fatalf("%s: PASS: %v %v", f.name, r, err)
		}
		if r, err := c.cmd("TYPE I"); err != nil || r.Code != 200 {
			t.Fatalf("%s: TYPE I: %v %v", f.name, r, err)
		}
		return c
	}
	f.a, f.b = login(), login()
}

func vsftpdSide(t *testing.T) *ftpSide {
	t.Helper()
	srv := refserver.StartVSFTPD(t)
	seedFTP(t, srv.Dir, srv.UID, srv.GID)
	f := &ftpSide{name: "vsftpd", addr: srv.Addr, user: srv.User, pass: srv.Password, dir: srv.Dir}
	dialFTPSide(t, f)
	return f
}

// upgateFTPSide starts upgate (a real gateway, a real agent process that
// is not root) with FTP on loopback, seeds alice's "/" as the agent's
// user, and logs in twice as alice.
func upgateFTPSide(t *testing.T) *ftpSide {
	t.Helper()
	u := startUpgate(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = config.PortRange{}
	})
	dir := u.UserDir("alice")
	seedFTP(t, dir, agenttest.NonRootUID, agenttest.NonRootUID)
	f := &ftpSide{name: "upgate", addr: u.Srv.FTPAddr.String(), user: "alice", pass: gwtest.Users["alice"], dir: dir}
	f.idle = func() { u.AgentIdle(t) }
	dialFTPSide(t, f)
	return f
}

func runFTP(t *testing.T, f *ftpSide) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	var out []stepResult
	for _, st := range ftpSteps() {
		out = append(out, stepResult{step: st.name, answer: st.run(f)})
	}
	if f.pending != nil {
		f.pending.Close()
	}
	f.a.Close()
	f.b.Close()
	if f.idle != nil {
		f.idle()
	}
	time.Sleep(100 * time.Millisecond) // vsftpd's session processes finish their writes
	return out, snapshot(t, f.dir)
}

// TestFTPDifferential runs the FTP sequence against vsftpd and upgate
// and compares every reply code (exactly or by its first digit, as each
// step says), the data, the listings and the resulting trees.
func TestFTPDifferential(t *testing.T) {
	ref := vsftpdSide(t)
	ug := upgateFTPSide(t)
	if n := len(ftpSteps()); n < 40 {
		t.Fatalf("only %d FTP steps", n)
	}
	refRes, refTree := runFTP(t, ref)
	ugRes, ugTree := runFTP(t, ug)
	compareWithUpgate(t, "ftp", "vsftpd", refRes, refTree, ugRes, ugTree)
}

// TestFTPDifferentialSelfCheck runs the sequence against two vsftpd
// servers and expects no difference at all.
func TestFTPDifferentialSelfCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("harness self-check; skipped with -short")
	}
	one, two := vsftpdSide(t), vsftpdSide(t)
	r1, t1 := runFTP(t, one)
	r2, t2 := runFTP(t, two)
	compareSelf(t, "ftp", "vsftpd", r1, t1, r2, t2)
}
