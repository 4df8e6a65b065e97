package sftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/upgate/upgate/backend"
)

// sinkDir is a directory an SCP sink writes into: the target, or one a D
// record made or entered.
type sinkDir struct {
	name  string // in the user's tree
	shown string // as the client's records name it, for messages
	// isDir says records name entries in it; false: the target names the
	// file (or directory) a record makes itself.
	isDir bool
	slash bool // the target was written with a trailing "/"
	// lookup is why the target as written cannot be looked up ("file/.":
	// ENOTDIR), which its clean path would hide; nil if it can.
	lookup error
	// What a D record asks of the directory once its entries are in (its
	// E): times (-p), and a mode (-p, or a directory made here).
	times   *scpTimes
	mode    os.FileMode
	setMode bool
}

// sink receives files for "scp -t TARGET": it answers the client's
// records until the client ends the stream or a fatal error, and returns
// the exit status (scp.c's sink).
func (s *scpSession) sink(target string) int {
	top := &sinkDir{name: resolve(target), shown: target, slash: strings.HasSuffix(target, "/")}
	top.lookup = checkAsWritten(s.fs, target, nil)
	var fi os.FileInfo
	err := top.lookup
	if err == nil {
		fi, err = s.fs.Stat(top.name)
	}
	if s.targetDir && (err != nil || !fi.IsDir()) {
		// scp.c's verifydir: the stat's error, or not a directory.
		if err == nil {
			err = syscall.ENOTDIR
		}
		_ = s.fail("%s: %s", target, errText(err))
		return 1
	}
	top.isDir = err == nil && fi.IsDir()
	if s.ok() != nil {
		return 1
	}
	stack := []*sinkDir{top}
	var times *scpTimes // a T record's, for the next C or D
	// first is the first record of a directory's level, which scp.c's
	// sink (called again for each D) takes for a shell's message if it is
	// no record.
	for first, next := true, false; ; first, next = next, false {
		kind, err := s.in.ReadByte()
		if err != nil {
			// The client is done. Each level scp.c's sink was in returns
			// as it ends, giving its directory its times and mode.
			for i := len(stack) - 1; i > 0; i-- {
				s.finishDir(stack[i])
			}
			return s.status()
		}
		if kind == '\n' {
			_ = s.protocolError("unexpected <newline>")
			return 1
		}
		rest, err := s.line()
		if err != nil {
			_ = s.protocolError(err.Error())
			return 1
		}
		if i := bytes.IndexByte(rest, 0); i >= 0 {
			rest = rest[:i] // a C string ends there, in scp.c
		}
		switch kind {
		case 1, 2: // the client's own error, which it printed
			s.errs++
			s.log.Info("scp: the client reported an error", "message", wireLine(strings.TrimPrefix(string(rest), "scp: ")))
			if kind == 2 {
				return 1
			}
			continue
		case 'E':
			times = nil // a T's level ends with it
			if s.ok() != nil {
				return 1
			}
			if len(stack) == 1 {
				return s.status()
			}
			s.finishDir(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			continue
		case 'T':
			t, valid, err := parseTimes(string(rest))
			if err != nil {
				_ = s.protocolError(err.Error())
				return 1
			}
			times = nil
			if valid {
				times = &t
			}
			if s.ok() != nil {
				return 1
			}
			continue
		case 'C', 'D':
		default:
			if first {
				// Not scp at all (a shell's message, scp.c says): shown
				// as it came.
				msg := append([]byte{kind}, rest...)
				if kind == 0 {
					msg = nil
				}
				_ = s.fail("%s", msg)
				return 1
			}
			_ = s.protocolError("expected control record")
			return 1
		}
		mode, size, name, err := parseEntry(string(rest))
		if err != nil {
			_ = s.protocolError(err.Error())
			return 1
		}
		if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
			_ = s.fail("error: unexpected filename: %s", name)
			return 1
		}
		cur := stack[len(stack)-1]
		np, shown := cur.name, cur.shown
		if cur.isDir {
			np = path.Join(cur.name, name)
			shown = cur.shown + "/" + name // "dir//name" for "dir/", as scp.c writes it
			if cur.shown == "/" {
				shown = "/" + name
			}
		}
		t := times
		times = nil
		if len(np) > scpPathMax {
			if err := s.fail("%s: %s", shown, errText(syscall.ENAMETOOLONG)); err != nil {
				return 1
			}
			continue
		}
		if kind == 'D' {
			if !s.recursive {
				_ = s.protocolError("received directory without -r")
				return 1
			}
			d, err := s.enterDir(cur, np, shown, mode, t)
			if errors.Is(err, errSCPFatal) {
				return 1
			}
			if d != nil {
				stack = append(stack, d)
				next = true
			}
			continue
		}
		if err := s.receive(cur, np, shown, mode, size, t); errors.Is(err, errSCPFatal) {
			return 1
		}
	}
}

// parseEntry parses a C or D record after its letter: "MODE SIZE NAME",
// as scp.c does (four octal digits, a decimal size an off_t holds, the
// rest the name).
func parseEntry(rec string) (mode os.FileMode, size int64, name string, err error) {
	if len(rec) < 4 {
		return 0, 0, "", errors.New("bad mode")
	}
	mode, ok := recordMode(rec[:4])
	if !ok {
		return 0, 0, "", errors.New("bad mode")
	}
	if len(rec) < 5 || rec[4] != ' ' {
		return 0, 0, "", errors.New("mode not delimited")
	}
	rest := rec[5:]
	n := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
	if n == 0 {
		return 0, 0, "", errors.New("size not present")
	}
	if n == len(rest) || rest[n] != ' ' {
		return 0, 0, "", errors.New("size not delimited")
	}
	size, err = strconv.ParseInt(rest[:n], 10, 64)
	if err != nil {
		return 0, 0, "", errors.New("size out of range")
	}
	return mode, size, rest[n+1:], nil
}

// receive writes one C record's file: an atomic upload of exactly size
// bytes from the client, committed once the client's closing 0 byte
// arrived, or the stream ended where it was due (below). An error the
// client should see is sent (and the transfer goes on); errSCPFatal ends
// it.
//
// A client whose stream ends right after the file's data, where its 0
// byte was due, sent the file whole: libssh2's scp_send (curl's scp://,
// PHP's ssh2_scp_send) never sends that byte, and sshd's scp has closed
// the file by then (and set a -p mode), so that the file stays and the
// transfer ends with status 1, nothing said, its times not set. So does
// this one: the file is committed, with its -p mode but not its times.
// Such a client closes its channel and the connection at once (PHP's
// script ends): the file counts in s.receiving from its open to its
// commit, and the connection's end waits for it before the login's
// filesystem ends (serveConn), so that the commit is not cut off.
func (s *scpSession) receive(cur *sinkDir, np, shown string, mode os.FileMode, size int64, t *scpTimes) error {
	if !cur.isDir && cur.lookup != nil {
		return s.fail("%s: %s", shown, errText(cur.lookup))
	}
	if !cur.isDir && cur.slash {
		// open(2) of "name/" with O_CREAT: EISDIR, whatever is there.
		return s.fail("%s: %s", shown, errText(syscall.EISDIR))
	}
	if s.receiving != nil {
		defer s.receiving.add()()
	}
	// Without -p a new file gets the record's permissions less the
	// agent's umask, and a replaced one keeps its mode, as open(2) gives
	// them; with -p the record's mode is set.
	f, err := s.fs.OpenFile(np, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return s.fail("%s: %s", shown, errText(err))
	}
	// Every way out but the commit below discards the upload, a panic's
	// included, so that its file is released.
	ended := false
	discard := func(why error) {
		ended = true
		abort(f, why)
	}
	defer func() {
		if !ended {
			discard(errors.New("scp: upload interrupted"))
		}
	}()
	s.setOp("scp upload " + np)
	defer s.setOp("exec scp")
	if err := s.ok(); err != nil {
		discard(err)
		return err
	}
	in := &countingReader{r: s.in}
	_, werr := io.CopyN(f, in, size)
	if in.err != nil {
		// The connection is gone: nothing arrived whole.
		discard(fmt.Errorf("scp: reading %s from the client: %w", np, in.err))
		s.log.Info("scp: upload aborted, the client's data ended", "path", np, "received", in.n, "size", size)
		return fmt.Errorf("%w: %w", errSCPFatal, in.err)
	}
	if werr != nil {
		// Read the rest, to stay in step with the client.
		if _, err := io.CopyN(io.Discard, s.in, size-in.n); err != nil {
			discard(werr)
			return fmt.Errorf("%w: %w", errSCPFatal, err)
		}
	}
	answer := s.response()
	whole := werr == nil && errors.Is(answer, errNoAnswer)
	if err := answer; err != nil && !whole {
		discard(err)
		if errors.Is(err, errSCPFatal) {
			return err
		}
		// The sender could not read its file whole: what it sent in its
		// place must not replace ours.
		return s.fail("%s: not written: the sender reported an error", shown)
	}
	if werr != nil {
		discard(werr)
		return s.fail("%s: %s", shown, errText(werr))
	}
	var noted []string
	var chmodAfter, timesAfter bool
	file := backend.FileWrapper{File: f}
	var want os.FileMode
	if s.preserve {
		want = keptMode(s.log, np, mode, false)
		if err := file.Chmod(want); errors.Is(err, errors.ErrUnsupported) {
			chmodAfter = true
		} else if err != nil {
			noted = append(noted, fmt.Sprintf("%s: set mode: %s", shown, errText(err)))
		}
	}
	if t != nil && !whole {
		if err := file.SetTimes(t.atime, t.mtime); errors.Is(err, errors.ErrUnsupported) {
			timesAfter = true
		} else if err != nil {
			noted = append(noted, fmt.Sprintf("%s: set times: %s", shown, errText(err)))
		}
	}
	ended = true
	if err := f.Close(); err != nil {
		s.log.Info("scp: upload failed", "path", np, "err", err)
		if whole {
			return answer
		}
		return s.fail("%s: %s", shown, errText(err))
	}
	if chmodAfter {
		if err := s.fs.Chmod(np, want); err != nil {
			noted = append(noted, fmt.Sprintf("%s: set mode: %s", shown, errText(err)))
		}
	}
	if timesAfter {
		if err := s.fs.Chtimes(np, t.atime, t.mtime); err != nil {
			noted = append(noted, fmt.Sprintf("%s: set times: %s", shown, errText(err)))
		}
	}
	if whole {
		s.log.Info("scp: the client's stream ended after the file's data: written, as sshd's scp writes it (its times, if any, are not set)",
			"path", np, "size", size, "not_set", noted)
		return answer
	}
	if len(noted) > 0 {
		// The file is written; what could not be set is reported, as
		// scp.c's note_err.
		return s.fail("%s", strings.Join(noted, "; "))
	}
	return s.ok()
}

// enterDir answers a D record: the directory np is made, or an existing
// one entered, and returned to receive the entries that follow; nil when
// it was refused (the client then sends none of them).
func (s *scpSession) enterDir(cur *sinkDir, np, shown string, mode os.FileMode, t *scpTimes) (*sinkDir, error) {
	d := &sinkDir{name: np, shown: shown, isDir: true, times: t}
	if !cur.isDir && cur.lookup != nil {
		return nil, s.fail("%s: %s", shown, errText(cur.lookup))
	}
	fi, err := s.fs.Stat(np)
	switch {
	case err == nil && !fi.IsDir():
		why := syscall.ENOTDIR
		if !cur.isDir && cur.slash {
			why = syscall.EEXIST // mkdir("file/")
		}
		return nil, s.fail("%s: %s", shown, errText(why))
	case err == nil:
		if s.preserve {
			d.mode, d.setMode = keptMode(s.log, np, mode, true), true
			s.chmodDir(np, d.mode)
		}
	default:
		// A directory that cannot be written into must still receive its
		// entries: made with the owner's bits, given its mode at its E.
		if err := s.fs.Mkdir(np, mode.Perm()|0o700); err != nil {
			return nil, s.fail("%s: %s", shown, errText(err))
		}
		d.setMode = true
		if s.preserve {
			d.mode = keptMode(s.log, np, mode, true)
		} else if fi, err := s.fs.Stat(np); err == nil {
			// The record's permissions less the umask, as scp.c's chmod
			// sets them (which also clears a setgid bit inherited).
			d.mode = fi.Mode().Perm() &^ (0o700 &^ mode.Perm())
		} else {
			d.setMode = false
		}
	}
	s.setOp("scp into " + np)
	if err := s.ok(); err != nil {
		return nil, errSCPFatal
	}
	return d, nil
}

// finishDir sets what a D record asked of its directory once its
// entries are in; failures are ignored, as scp.c ignores them.
func (s *scpSession) finishDir(d *sinkDir) {
	if d.times != nil {
		if err := s.fs.Chtimes(d.name, d.times.atime, d.times.mtime); err != nil {
			s.log.Info("scp: directory times not set", "path", d.name, "err", err)
		}
	}
	if d.setMode {
		s.chmodDir(d.name, d.mode)
	}
}

// chmodDir sets a directory's mode (package chmodDir); a failure is
// logged and ignored, as scp.c ignores it.
func (s *scpSession) chmodDir(name string, m os.FileMode) {
	if err := chmodDir(s.fs, s.log, name, m); err != nil {
		s.log.Info("scp: directory mode not set", "path", name, "mode", m.String(), "err", err)
	}
}

// countingReader counts what it read and keeps its error, so that a copy
// tells a failed read from a failed write.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
		if err == io.EOF {
			c.err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}
