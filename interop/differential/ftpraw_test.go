package differential_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// rawFTP is an FTP control connection driven command by command, so that
// every reply code can be compared. Every read and write is bounded by
// ftpTimeout.
type rawFTP struct {
	c net.Conn
	r *bufio.Reader
}

const ftpTimeout = 15 * time.Second

// ftpReply is one (possibly multi-line) reply.
type ftpReply struct {
	Code  int
	Lines []string // every line, the code and separator removed
}

func dialRawFTP(addr string) (*rawFTP, ftpReply, error) {
	c, err := net.DialTimeout("tcp", addr, ftpTimeout)
	if err != nil {
		return nil, ftpReply{}, fmt.Errorf("dial %s: %w", addr, err)
	}
	f := &rawFTP{c: c, r: bufio.NewReader(c)}
	greet, err := f.read()
	if err != nil {
		c.Close()
		return nil, greet, err
	}
	return f, greet, nil
}

func (f *rawFTP) Close() error { return f.c.Close() }

// read reads one reply (RFC 959 multi-line form included), at most 10,000
// lines.
func (f *rawFTP) read() (ftpReply, error) {
	_ = f.c.SetReadDeadline(time.Now().Add(ftpTimeout))
	var rep ftpReply
	line, err := f.r.ReadString('\n')
	if err != nil {
		return rep, fmt.Errorf("reading reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 3 {
		return rep, fmt.Errorf("short reply line %q", line)
	}
	rep.Code, err = strconv.Atoi(line[:3])
	if err != nil {
		return rep, fmt.Errorf("reply line %q: %w", line, err)
	}
	if len(line) == 3 || line[3] != '-' {
		rep.Lines = []string{strings.TrimPrefix(line[3:], " ")}
		return rep, nil
	}
	rep.Lines = []string{line[4:]}
	end := line[:3] + " "
	for i := 0; i < 10000; i++ {
		line, err = f.r.ReadString('\n')
		if err != nil {
			return rep, fmt.Errorf("reading multi-line reply: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, end) || line == end[:3] {
			rep.Lines = append(rep.Lines, strings.TrimPrefix(line, end))
			return rep, nil
		}
		rep.Lines = append(rep.Lines, line)
	}
	return rep, errors.New("reply longer than 10,000 lines")
}

// cmd sends one command line (raw bytes, CRLF added) and reads the reply.
func (f *rawFTP) cmd(line string) (ftpReply, error) {
	_ = f.c.SetWriteDeadline(time.Now().Add(ftpTimeout))
	if _, err := io.WriteString(f.c, line+"\r\n"); err != nil {
		return ftpReply{}, fmt.Errorf("sending %q: %w", line, err)
	}
	return f.read()
}

// pasv sends PASV and dials the data address it names.
func (f *rawFTP) pasv() (net.Conn, ftpReply, error) {
	rep, err := f.cmd("PASV")
	if err != nil || rep.Code != 227 {
		return nil, rep, err
	}
	text := strings.Join(rep.Lines, " ")
	i, j := strings.IndexByte(text, '('), strings.IndexByte(text, ')')
	if i < 0 || j < i {
		return nil, rep, fmt.Errorf("227 without an address: %q", text)
	}
	var n [6]int
	parts := strings.Split(text[i+1:j], ",")
	if len(parts) != 6 {
		return nil, rep, fmt.Errorf("227 address %q", text[i+1:j])
	}
	for k, p := range parts {
		n[k], err = strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, rep, fmt.Errorf("227 address %q: %w", text[i+1:j], err)
		}
	}
	addr := fmt.Sprintf("%d.%d.%d.%d:%d", n[0], n[1], n[2], n[3], n[4]<<8|n[5])
	c, err := net.DialTimeout("tcp", addr, ftpTimeout)
	if err != nil {
		return nil, rep, fmt.Errorf("data connection to %s: %w", addr, err)
	}
	return c, rep, nil
}

// transfer runs a data command over a fresh passive connection: it
// sends line, and on a 1xx reply writes upload (if not nil, then closes
// the data connection) or reads everything, then reads the final
// reply. It returns the replies (preliminary and final, or the one
// refusal) and the data read.
func (f *rawFTP) transfer(line string, upload []byte) ([]ftpReply, []byte, error) {
	dc, rep, err := f.pasv()
	if err != nil || dc == nil {
		return []ftpReply{rep}, nil, err
	}
	defer dc.Close()
	_ = dc.SetDeadline(time.Now().Add(ftpTimeout))
	first, err := f.cmd(line)
	if err != nil {
		return nil, nil, err
	}
	if first.Code >= 200 {
		return []ftpReply{first}, nil, nil
	}
	var data []byte
	var derr error
	if upload != nil {
		_, derr = dc.Write(upload)
		dc.Close()
	} else {
		data, derr = io.ReadAll(io.LimitReader(dc, 64<<20))
		dc.Close()
	}
	final, err := f.read()
	if err != nil {
		return []ftpReply{first}, data, errors.Join(err, derr)
	}
	return []ftpReply{first, final}, data, derr
}
