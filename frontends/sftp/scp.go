package sftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// The legacy SCP protocol, as OpenSSH's scp(1) speaks it when it runs
// "scp -t TARGET" (sink: the client uploads) or "scp -f SOURCE..."
// (source: the client downloads) on the server through an exec request:
// scp -O of OpenSSH 9, and the default of OpenSSH before 9.0 (Ubuntu
// 22.04, Windows 10's OpenSSH) and of the scripts written for it. Newer
// scp clients speak SFTP and never come here. (WinSCP's SCP mode needs a
// shell, which is refused: it is served by SFTP.)
//
// Both sides exchange records, each a line: "C0644 SIZE NAME" (a file,
// its SIZE bytes and a 0 byte follow), "D0755 0 NAME" (a directory; its
// entries follow, up to "E"), "E" (the directory's end), and "T MTIME 0
// ATIME 0" (the times of the next C or D, with -p). The receiver answers
// each with a 0 byte, or a 1 byte and "scp: message\n" (that file or
// directory failed, the transfer goes on), or a 2 byte and a message
// (fatal). scp.c in openssh-portable (sink, source, rsource, response) is
// the reference this follows, with two differences on purpose:
//   - A file arrives as an atomic upload, as every upload does here: it is
//     invisible until all of it has arrived, and one that does not arrive
//     whole (the connection lost in its data, a write that failed, a
//     sender that reports a read error after its data) leaves the old
//     file as it was. sshd's scp writes into the old file in place and
//     keeps what arrived. A file whose data all arrived is written even
//     if the stream or the connection ends where its closing 0 byte was
//     due, as sshd's scp has written it by then (receive).
//   - With -p, setuid and setgid bits of a file are dropped (logged), as
//     the agent refuses them (an SFTP SETSTAT's are dropped alike).

// scpLineMax bounds a record line, as scp.c's 2048-byte buffer does.
const scpLineMax = 2048

// scpPathMax bounds the paths a recursive copy makes, as scp.c's
// PATH_MAX does: a link to its own directory ends there.
const scpPathMax = 4096

// errSCPFatal ends a transfer after a fatal error was sent, or the
// connection failed.
var errSCPFatal = errors.New("scp: transfer ended")

// scpSession is one "scp -t" or "scp -f" run on a channel.
type scpSession struct {
	ctx   context.Context
	fs    afero.Fs
	log   *slog.Logger
	setOp func(op string) // what the sessions view shows the session doing
	// receiving counts the files whose data is arriving or committing,
	// which the connection's end waits for (conn.receiving); nil for none.
	receiving *pending
	in        *bufio.Reader
	out       io.Writer

	recursive bool // -r
	preserve  bool // -p: times and modes
	targetDir bool // -d: the target must be a directory
	errs      int  // errors reported, as scp.c counts them: the exit status is 1 if any
}

// scpUsage is what scp prints for options it does not know.
const scpUsage = "usage: scp [-prdv] -t target | -f source ...\n"

// scp runs the SCP server side of "scp [-rpdv] -t [--] TARGET" or "scp
// [-rpv] -f [--] SOURCE..." on the channel rw and returns its exit
// status.
func (c *conn) scp(rw io.ReadWriter, stderr io.Writer, login *gateway.Login, words []word) int {
	s := newSCPSession(c.ctx, login.Fs, rw, c.sess.Logger(), c.sess.SetOp)
	s.receiving = &c.receiving
	return s.run(words, stderr)
}

// newSCPSession serves SCP on rw over fsys, until ctx ends.
func newSCPSession(ctx context.Context, fsys afero.Fs, rw io.ReadWriter, log *slog.Logger, setOp func(string)) *scpSession {
	return &scpSession{ctx: ctx, fs: fsys, log: log.With("command", "scp"), setOp: setOp,
		in: bufio.NewReaderSize(rw, 64<<10), out: rw}
}

// run parses scp's arguments (options as getopt(3) reads them, then the
// operands, a shell's patterns expanded) and runs the sink or the
// source: 0, or 1 after any error, as scp.c exits.
func (s *scpSession) run(words []word, stderr io.Writer) int {
	from, to := false, false
	i := 0
	for ; i < len(words); i++ {
		w := words[i].text
		if w == "--" {
			i++
			break
		}
		if len(w) < 2 || w[0] != '-' {
			break
		}
		for _, o := range w[1:] {
			switch o {
			case 'r':
				s.recursive = true
			case 'p':
				s.preserve = true
			case 'd':
				s.targetDir = true
			case 'f':
				from = true
			case 't':
				to = true
			case 'v', 'q', 'T': // verbose, quiet, no name checks: the client's business
			default:
				fmt.Fprint(stderr, scpUsage)
				s.log.Info("scp refused: unknown option", "option", string(o))
				return 1
			}
		}
	}
	g := &globber{ctx: s.ctx, fs: s.fs}
	operands, err := g.expandAll(words[i:])
	if err != nil {
		// What a shell says of an argument list too long to run.
		fmt.Fprintf(stderr, "upgate: scp: %v\n", err)
		s.log.Warn("scp refused: its patterns match too much", "err", err)
		return 1
	}
	switch {
	case from:
		s.log.Info("scp source", "paths", len(operands), "recursive", s.recursive, "preserve", s.preserve)
		return s.source(operands)
	case to:
		if len(operands) != 1 {
			_ = s.fail("ambiguous target")
			return 1
		}
		s.log.Info("scp sink", "target", truncate(operands[0], 200), "recursive", s.recursive, "preserve", s.preserve)
		return s.sink(operands[0])
	default:
		fmt.Fprintln(stderr, "upgate: scp runs here only as the server side of a copy (-t or -f)")
		s.log.Info("scp refused: neither -t nor -f")
		return 1
	}
}

// status is the exit status scp.c gives: 1 after any error.
func (s *scpSession) status() int {
	if s.errs > 0 {
		return 1
	}
	return 0
}

// ok answers a record: done, go on. Its error wraps errSCPFatal.
func (s *scpSession) ok() error {
	if _, err := s.out.Write([]byte{0}); err != nil {
		return fmt.Errorf("%w: %w", errSCPFatal, err)
	}
	return nil
}

// fail answers a record with an error the client prints, and the
// transfer goes on (scp.c's run_err); the error it returns wraps
// errSCPFatal when the answer could not be sent.
func (s *scpSession) fail(format string, args ...any) error {
	s.errs++
	msg := fmt.Sprintf(format, args...)
	s.log.Info("scp: error sent to the client", "message", msg)
	if _, err := fmt.Fprintf(s.out, "\x01scp: %s\n", wireLine(msg)); err != nil {
		return fmt.Errorf("%w: %w", errSCPFatal, err)
	}
	return nil
}

// protocolError reports a record the session cannot follow, which ends
// it, as scp.c's SCREWUP.
func (s *scpSession) protocolError(why string) error {
	_ = s.fail("protocol error: %s", why)
	return errSCPFatal
}

// response reads the peer's answer to a record or a file's data: nil for
// a 0 byte; for a 1 byte, the error it reports (the peer goes on); for a
// 2 byte or anything else, the error wrapped in errSCPFatal, as scp.c's
// response() ends then. A lost connection is errSCPFatal too.
func (s *scpSession) response() error {
	b, err := s.in.ReadByte()
	if err != nil {
		return fmt.Errorf("%w: reading an answer: %w: %w", errSCPFatal, errNoAnswer, err)
	}
	if b == 0 {
		return nil
	}
	line, err := s.line()
	if err != nil {
		return fmt.Errorf("%w: reading an answer: %w", errSCPFatal, err)
	}
	s.errs++
	msg := strings.TrimPrefix(string(line), "scp: ")
	if b != 1 {
		return fmt.Errorf("%w: the client reported: %s", errSCPFatal, msg)
	}
	return fmt.Errorf("the client reported: %s", msg)
}

// errNoAnswer is a peer's stream that ended where its answer was due.
var errNoAnswer = errors.New("the client's stream ended")

// errLostConnection is a line the connection ended in the middle of.
var errLostConnection = errors.New("lost connection")

// line reads the rest of a line, without its "\n": at most scpLineMax
// bytes, as scp.c reads them.
func (s *scpSession) line() ([]byte, error) {
	var b []byte
	for len(b) < scpLineMax {
		c, err := s.in.ReadByte()
		if err != nil {
			return nil, errLostConnection
		}
		if c == '\n' {
			return b, nil
		}
		b = append(b, c)
	}
	return nil, errors.New("line too long")
}

// wireLine makes msg one line the client can print: control bytes are
// written as \ooo, as vis(3) writes them.
func wireLine(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "\\%03o", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// errText is what strerror(3) says of err's errno ("No such file or
// directory"), as scp.c's messages say it; an error without one says
// itself.
func errText(err error) string {
	var en syscall.Errno
	switch {
	case errors.As(err, &en):
		s := en.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	case errors.Is(err, fs.ErrNotExist):
		return "No such file or directory"
	case errors.Is(err, fs.ErrPermission):
		return "Permission denied"
	case errors.Is(err, fs.ErrExist):
		return "File exists"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// scpTimes are a T record's times.
type scpTimes struct{ atime, mtime time.Time }

// parseTimes parses a T record after its letter, "MTIME USEC ATIME
// USEC", as scp.c's sink does, with its messages: seconds strtoull(3)
// reads after a digit, microseconds strtol(3) reads (a sign and leading
// blanks allowed), in 0-999999. ok is false for seconds a time_t cannot
// hold, which scp.c ignores; err is for a malformed record.
func parseTimes(rec string) (t scpTimes, ok bool, err error) {
	ok = true
	sec := func(what string) (int64, error) {
		if rec == "" || rec[0] < '0' || rec[0] > '9' {
			return 0, fmt.Errorf("%s.sec not present", what)
		}
		n := len(rec) - len(strings.TrimLeft(rec, "0123456789"))
		v, perr := strconv.ParseInt(rec[:n], 10, 64)
		if perr != nil {
			ok = false // out of range (strtoull saturates)
		}
		if rec = rec[n:]; rec == "" || rec[0] != ' ' {
			return 0, fmt.Errorf("%s.sec not delimited", what)
		}
		rec = rec[1:]
		return v, nil
	}
	usec := func(what string, end string) (int64, error) {
		v, rest := strtol(rec)
		if !strings.HasPrefix(rest, end) || (end == "" && rest != "") || v < 0 || v > 999999 {
			return 0, fmt.Errorf("%s.usec not delimited", what)
		}
		rec = strings.TrimPrefix(rest, end)
		return v, nil
	}
	ms, err := sec("mtime")
	if err != nil {
		return t, false, err
	}
	mu, err := usec("mtime", " ")
	if err != nil {
		return t, false, err
	}
	as, err := sec("atime")
	if err != nil {
		return t, false, err
	}
	au, err := usec("atime", "")
	if err != nil {
		return t, false, err
	}
	return scpTimes{mtime: time.Unix(ms, mu*1000), atime: time.Unix(as, au*1000)}, ok, nil
}

// strtol reads a decimal long as strtol(3) does: leading blanks, a sign,
// digits; no digits read nothing (0 and s whole); out of range is the
// nearest of math.MinInt64, math.MaxInt64.
func strtol(s string) (int64, string) {
	i := 0
	for i < len(s) && (s[i] == ' ' || '\t' <= s[i] && s[i] <= '\r') {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	j := i
	for j < len(s) && '0' <= s[j] && s[j] <= '9' {
		j++
	}
	if j == i {
		return 0, s
	}
	v, err := strconv.ParseInt(s[i:j], 10, 64)
	if err != nil {
		v = math.MaxInt64
		if neg {
			return math.MinInt64, s[j:]
		}
	}
	if neg {
		v = -v
	}
	return v, s[j:]
}

// resolve is the path a client's operand names in the user's tree: a
// relative one starts at the root, the user's home.
func resolve(operand string) string { return path.Join("/", operand) }

// recordMode parses a C or D record's four octal digits, as scp.c does.
func recordMode(digits string) (os.FileMode, bool) {
	if len(digits) != 4 {
		return 0, false
	}
	var m uint32
	for i := 0; i < 4; i++ {
		c := digits[i]
		if c < '0' || c > '7' {
			return 0, false
		}
		m = m<<3 | uint32(c-'0')
	}
	return (&sftp.FileStat{Mode: m}).FileMode(), true
}

// unixMode is m's permission and special bits as a C or D record writes
// them (scp.c's FILEMODEMASK: the sticky bit is not sent).
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	return u
}

// abort discards an upload: its Close commits nothing.
func abort(f afero.File, why error) {
	backend.FileWrapper{File: f}.TransferError(why)
	_ = f.Close()
}
