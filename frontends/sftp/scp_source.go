package sftp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/upgate/upgate/backend"
)

// source sends the operands for "scp -f SOURCE...": each file, and with
// -r each directory's tree, as scp.c's source and rsource do. It returns
// the exit status.
func (s *scpSession) source(operands []string) int {
	// The client's go-ahead: an error there is counted, and the files
	// go all the same, as scp.c sends them.
	if err := s.response(); errors.Is(err, errSCPFatal) {
		return 1
	}
	for _, name := range operands {
		for len(name) > 1 && strings.HasSuffix(name, "/") {
			name = name[:len(name)-1]
		}
		if err := s.send(name); errors.Is(err, errSCPFatal) {
			return 1
		}
	}
	return s.status()
}

// send sends one operand (or a directory's entry), named as the client
// wrote it.
func (s *scpSession) send(shown string) error {
	if err := checkAsWritten(s.fs, shown, nil); err != nil {
		return s.fail("%s: %s", shown, errText(err))
	}
	np := resolve(shown)
	f, err := s.fs.OpenFile(np, os.O_RDONLY, 0)
	if err != nil {
		return s.fail("%s: %s", shown, errText(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return s.fail("%s: %s", shown, errText(err))
	}
	switch {
	case fi.Mode().IsRegular():
	case fi.IsDir() && s.recursive:
		names, err := f.Readdirnames(-1)
		f.Close() // not held open below: a deep tree would hold one per level
		if err != nil {
			return s.fail("%s: %s", shown, errText(err))
		}
		return s.sendDir(shown, fi, names)
	default:
		f.Close()
		return s.fail("%s: not a regular file", shown)
	}
	defer f.Close()
	if s.preserve {
		if err := s.sendTimes(fi); err != nil {
			return err
		}
	}
	size := fi.Size()
	if _, err := fmt.Fprintf(s.out, "C%04o %d %s\n", unixMode(fi.Mode()), size, visName(lastName(shown))); err != nil {
		return errSCPFatal
	}
	if err := s.response(); err != nil {
		return err // refused: the next one
	}
	s.setOp("scp download " + np)
	defer s.setOp("exec scp")
	in := &countingReader{r: f}
	n, err := io.CopyN(s.out, in, size)
	if err != nil && in.err == nil {
		return errSCPFatal // the channel failed
	}
	if in.err != nil {
		// Keep the client in step: the rest of the size as zeros, then
		// the error in place of the closing 0 byte; a sink that follows
		// this protocol to the letter discards the file.
		if _, err := io.CopyN(s.out, zeros{}, size-n); err != nil {
			return errSCPFatal
		}
		why := errText(in.err)
		if errors.Is(in.err, io.ErrUnexpectedEOF) {
			why = "file shrank while it was being read"
		}
		s.log.Info("scp download failed", "path", np, "sent", n, "size", size, "err", in.err)
		if err := s.fail("%s: %s", shown, why); err != nil {
			return errSCPFatal
		}
	} else if err := s.ok(); err != nil {
		return errSCPFatal
	}
	return s.response()
}

// sendDir sends a directory's D record, its entries and its E.
func (s *scpSession) sendDir(shown string, fi os.FileInfo, names []string) error {
	if s.preserve {
		if err := s.sendTimes(fi); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(s.out, "D%04o 0 %s\n", unixMode(fi.Mode()), visName(lastName(shown))); err != nil {
		return errSCPFatal
	}
	if err := s.response(); err != nil {
		return err // refused: nothing of it is sent
	}
	for _, name := range names {
		if name == "." || name == ".." {
			continue
		}
		if len(shown)+1+len(name) >= scpPathMax-1 {
			if err := s.fail("%s/%s: name too long", shown, name); err != nil {
				return errSCPFatal
			}
			continue
		}
		if err := s.send(strings.TrimSuffix(shown, "/") + "/" + name); errors.Is(err, errSCPFatal) {
			return err
		}
	}
	if _, err := io.WriteString(s.out, "E\n"); err != nil {
		return errSCPFatal
	}
	return s.response()
}

// sendTimes sends a T record of fi's times (-p).
func (s *scpSession) sendTimes(fi os.FileInfo) error {
	mtime, atime := fi.ModTime(), fi.ModTime()
	if st, ok := fi.Sys().(*backend.Stat); ok && !st.Atime.IsZero() {
		atime = st.Atime
	}
	if _, err := fmt.Fprintf(s.out, "T%d 0 %d 0\n", unixSeconds(mtime), unixSeconds(atime)); err != nil {
		return errSCPFatal
	}
	return s.response()
}

// unixSeconds is t in seconds since the epoch, 0 for earlier times, as
// scp.c sends them.
func unixSeconds(t time.Time) int64 { return max(t.Unix(), 0) }

// lastName is the last element of a path as scp.c takes it: what
// follows the last "/" ("" for "/").
func lastName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// visName encodes a name that holds a newline, which would end the
// record, as scp.c does: strnvis(3) with VIS_NL, which writes every byte
// but printable ASCII, space and tab as \^X, \M-x or \ooo and doubles
// backslashes. Other names go as they are.
func visName(name string) string {
	if !strings.Contains(name, "\n") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c > ' ' && c < 0x7f, c == ' ', c == '\t':
			b.WriteByte(c)
		case c&0x7f == ' ': // 0xa0
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte('\\')
			if c&0x80 != 0 {
				b.WriteByte('M')
				c &= 0x7f
			}
			switch {
			case c == 0x7f:
				b.WriteString("^?")
			case c < ' ':
				b.WriteByte('^')
				b.WriteByte(c + '@')
			default:
				b.WriteByte('-')
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// zeros reads as an endless run of 0 bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
