package sftp_test

// FuzzSFTPPackets sends fuzzed SFTP packets, after a valid INIT, on one
// SSH channel to a real gateway with an embedded agent, then ends the
// channel, and asserts what a client and the container may rely on
// whatever the bytes: every reply is a well-formed SFTP packet, no
// handler panicked, the server ends the channel within a bound (it never
// hangs), nothing appears outside alice's directory (not in bob's, not
// beside the agent root, not through the symbolic links in alice's
// directory that lead out of it: escapetest), and no upload's temp file
// stays behind once the channel is gone.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/escapetest"
	"github.com/upgate/upgate/internal/gwtest"
)

// fuzzDeadline bounds one fuzz input: its packets, the replies, the end
// of its channel, and the removal of its uploads' temp files.
const fuzzDeadline = 10 * time.Second

// fuzzSFTP is the gateway of a fuzz run, its layout on disk
// (escapetest), and a connection logged in as alice.
type fuzzSFTP struct {
	*escapetest.Layout
	client *ssh.Client
}

func newFuzzSFTP(f *testing.F) *fuzzSFTP {
	f.Helper()
	z := &fuzzSFTP{Layout: escapetest.New(f)}
	e := start(f, func(cfg *config.Config) {
		cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: z.Agent}}
		// The agent root's parent holds only what the layout names.
		cfg.SFTP.HostKeys = []string{filepath.Join(f.TempDir(), "hostkey-ed25519")}
	})
	conf := &ssh.ClientConfig{
		User:            "alice",
		Auth:            []ssh.AuthMethod{ssh.Password(gwtest.Users["alice"])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         fuzzDeadline,
	}
	c, err := ssh.Dial("tcp", e.Addr, conf)
	if err != nil {
		f.Fatal(err)
	}
	z.client = c
	f.Cleanup(func() { c.Close() })
	return z
}

// check fails if anything appeared outside alice's directory, or if an
// upload's temp file is left anywhere under it.
func (z *fuzzSFTP) check(t *testing.T) {
	t.Helper()
	if what, err := z.Escaped(); err != nil || what != "" {
		t.Fatalf("escaped: %s %v", what, err)
	}
	z.WaitNoTemps(t, agent.TempPrefix, fuzzDeadline)
}

// fuzzPackets cuts in into SFTP packets: each record is a type byte, a
// two-byte big-endian length and that many bytes of body (fewer at the
// end). Whatever follows a record whose type is 0 is sent as it is,
// unframed.
func fuzzPackets(in []byte) (pkts [][]byte, raw []byte) {
	for len(in) >= 3 {
		typ, n := in[0], int(binary.BigEndian.Uint16(in[1:3]))
		in = in[3:]
		if typ == 0 {
			return pkts, in
		}
		n = min(n, len(in))
		pkt := binary.BigEndian.AppendUint32(nil, uint32(1+n))
		pkts = append(pkts, append(append(pkt, typ), in[:n]...))
		in = in[n:]
	}
	return pkts, in
}

// record is one record of a fuzz input: typ, then id and body as one
// packet body.
func record(typ byte, id uint32, body ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	for _, x := range body {
		b = append(b, x...)
	}
	return append(binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(b))), b...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func str(s string) []byte { return sshString(nil, s) }

// fuzzReplyTypes are the packet types a server sends after the first
// VERSION, which pkg/sftp sends again in answer to another INIT.
var fuzzReplyTypes = map[byte]bool{2: true, 101: true, 102: true, 103: true, 104: true, 105: true, 201: true}

// readReplies reads the server's packets until the channel ends and
// checks each one's form.
func readReplies(r io.Reader) (n int, err error) {
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("reply %d: %w", n, err)
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if size < 5 || size > 1<<20 {
			return n, fmt.Errorf("reply %d: length %d", n, size)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return n, fmt.Errorf("reply %d of length %d: %w", n, size, err)
		}
		n++
		typ, body := body[0], body[5:]
		if !fuzzReplyTypes[typ] {
			return n, fmt.Errorf("reply %d: type %d", n, typ)
		}
		if typ != fxpStatus {
			continue
		}
		if len(body) < 8 {
			return n, fmt.Errorf("reply %d: STATUS of %d bytes", n, len(body))
		}
		code, mlen := binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:])
		if code > 31 || int(mlen) > len(body)-8 {
			return n, fmt.Errorf("reply %d: STATUS code %d, message of %d bytes in %d", n, code, mlen, len(body)-8)
		}
		if msg := string(body[8 : 8+mlen]); strings.Contains(msg, "internal error") {
			return n, fmt.Errorf("reply %d: a handler panicked: %q", n, msg)
		}
	}
}

func FuzzSFTPPackets(f *testing.F) {
	const (
		open, close, read, write, lstat, fstat, setstat, fsetstat = 3, 4, 5, 6, 7, 8, 9, 10
		opendir, readdir, remove, mkdir, rmdir, realpath, stat    = 11, 12, 13, 14, 15, 16, 17
		rename, readlink, symlink, extended                       = 18, 19, 20, 200
	)
	cat := func(rs ...[]byte) []byte { return slices.Concat(rs...) }
	perm := cat(u32(attrPermissions), u32(0o600))
	for _, seed := range [][]byte{
		nil,
		record(stat, 1, str("seed")),
		cat(record(open, 1, str("new"), u32(fxfWrite|fxfCreat|fxfTrunc), u32(0)),
			record(write, 2, str("1"), u64(0), str("hello")),
			record(close, 3, str("1"))),
		// An upload left open when the channel ends.
		cat(record(open, 1, str("seed"), u32(fxfWrite|fxfTrunc), u32(0)),
			record(write, 2, str("1"), u64(3), str("x"))),
		cat(record(open, 1, str("esc/out"), u32(fxfWrite|fxfCreat), u32(0)),
			record(mkdir, 2, str("tobob/d"), u32(0)),
			record(symlink, 3, str("l"), str("/../..")),
			record(open, 4, str("l/x"), u32(fxfWrite|fxfCreat), u32(0))),
		cat(record(opendir, 1, str(".")), record(readdir, 2, str("1")), record(readdir, 3, str("1")), record(close, 4, str("1"))),
		cat(record(setstat, 1, str("seed"), perm), record(fsetstat, 2, str("9"), perm),
			record(rename, 3, str("seed"), str("moved")), record(readlink, 4, str("esc")),
			record(realpath, 5, str("../..")), record(lstat, 6, str("tobob")), record(fstat, 7, str("1")),
			record(read, 8, str("1"), u64(0), u32(1<<30)), record(remove, 9, str("moved")),
			record(rmdir, 10, str("tobob"))),
		cat(record(open, 1, str("seed"), u32(fxfRead|fxfWrite), u32(0)),
			record(extended, 2, str("copy-data"), str("1"), u64(0), u64(0), str("1"), u64(2)),
			record(extended, 3, str("posix-rename@openssh.com"), str("seed"), str("esc/x")),
			record(extended, 4, str("hardlink@openssh.com"), str("seed"), str("tobob/x")),
			record(extended, 5, str("statvfs@openssh.com"), str("/")),
			record(extended, 6, str("lsetstat@openssh.com"), str("esc"), perm),
			record(extended, 7, str("fsync@openssh.com"), str("1"))),
		// Cut short, and unframed bytes after a type-0 record.
		record(open, 1, str("x"))[:9],
		append([]byte{0, 0, 0}, 0, 0, 0, 9, 3, 0, 0, 0),
		append([]byte{0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 3),
	} {
		f.Add(seed)
	}
	z := newFuzzSFTP(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		z.Reset(t)
		defer z.Reset(t)
		pkts, raw := fuzzPackets(in)
		p := newRawSFTP(t, z.client)
		sent := make(chan error, 1)
		go func() {
			var err error
			for _, pkt := range pkts {
				if _, err = p.w.Write(pkt); err != nil {
					break
				}
			}
			if err == nil && len(raw) > 0 {
				_, err = p.w.Write(raw)
			}
			_ = p.w.Close() // EOF: the client has nothing more to send
			sent <- err
		}()
		read := make(chan error, 1)
		go func() {
			_, err := readReplies(p.r)
			read <- err
		}()
		select {
		case err := <-read:
			if err != nil {
				t.Fatalf("%d packets and %d bytes unframed: %v", len(pkts), len(raw), err)
			}
		case <-time.After(fuzzDeadline):
			p.sess.Close()
			t.Fatalf("%d packets and %d bytes unframed: the channel did not end within %v", len(pkts), len(raw), fuzzDeadline)
		}
		// A write fails only when the server ended the channel first.
		select {
		case <-sent:
		case <-time.After(fuzzDeadline):
			t.Fatalf("sending %d packets: still blocked %v after the channel ended", len(pkts), fuzzDeadline)
		}
		p.sess.Close()
		z.check(t)
	})
}
