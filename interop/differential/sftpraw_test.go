package differential_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// rawSFTP speaks SFTP version 3 packet by packet over an SSH "sftp"
// subsystem channel, for what pkg/sftp's client cannot express (OPEN with
// any pflags and attributes, MKDIR with attributes, any extended request)
// and to see exactly what a server answers. Requests are sent one at a
// time; every answer is awaited for at most rawTimeout.
type rawSFTP struct {
	sess       *ssh.Session
	w          io.WriteCloser
	replies    chan rawPacket
	readerDone chan struct{}
	version    uint32
	exts       map[string]string
	nextID     uint32
	mu         sync.Mutex
	readErr    error
}

const rawTimeout = 15 * time.Second

// SFTP packet types (draft-ietf-secsh-filexfer-02) and OpenSSH's pflags.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201

	pfRead   = 0x01
	pfWrite  = 0x02
	pfAppend = 0x04
	pfCreat  = 0x08
	pfTrunc  = 0x10
	pfExcl   = 0x20

	attrSize     = 0x1
	attrUIDGID   = 0x2
	attrPerms    = 0x4
	attrACModTim = 0x8
)

// statusNames are the SFTP v3 status codes.
var statusNames = map[uint32]string{
	0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED", 4: "FAILURE",
	5: "BAD_MESSAGE", 6: "NO_CONNECTION", 7: "CONNECTION_LOST", 8: "OP_UNSUPPORTED",
}

type rawPacket struct {
	typ  byte
	data []byte // after the type byte
}

// attrs is an SFTP v3 ATTRS block.
type attrs struct {
	Flags        uint32
	Size         uint64
	UID, GID     uint32
	Perms        uint32
	Atime, Mtime uint32
	Ext          [][2]string
}

func (a attrs) marshal() []byte {
	b := u32(nil, a.Flags)
	if a.Flags&attrSize != 0 {
		b = binary.BigEndian.AppendUint64(b, a.Size)
	}
	if a.Flags&attrUIDGID != 0 {
		b = u32(u32(b, a.UID), a.GID)
	}
	if a.Flags&attrPerms != 0 {
		b = u32(b, a.Perms)
	}
	if a.Flags&attrACModTim != 0 {
		b = u32(u32(b, a.Atime), a.Mtime)
	}
	return b
}

// nameEntry is one entry of an SSH_FXP_NAME answer.
type nameEntry struct {
	Name, Long string
	Attrs      attrs
}

// reply is a server's answer to one request.
type reply struct {
	Type   byte
	Code   uint32 // STATUS
	Msg    string // STATUS
	Handle string
	Data   []byte // DATA, EXTENDED_REPLY
	Names  []nameEntry
	Attrs  attrs
}

// ok is true for a STATUS OK or any non-STATUS answer.
func (r reply) ok() bool { return r.Type != fxpStatus || r.Code == 0 }

// status is "OK" for a success and the status code's name otherwise.
func (r reply) status() string {
	if r.Type != fxpStatus {
		return "OK"
	}
	if n, ok := statusNames[r.Code]; ok {
		return n
	}
	return fmt.Sprintf("status%d", r.Code)
}

func u32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func str(b []byte, s string) []byte { return append(u32(b, uint32(len(s))), s...) }

// newRawSFTP opens an sftp subsystem channel on conn and does the version
// exchange.
func newRawSFTP(conn *ssh.Client) (*rawSFTP, error) {
	sess, err := conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("stdin: %w", err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("stdout: %w", err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		sess.Close()
		return nil, fmt.Errorf("subsystem sftp: %w", err)
	}
	c := &rawSFTP{sess: sess, w: w, replies: make(chan rawPacket, 4), readerDone: make(chan struct{}), nextID: 1}
	go c.readLoop(r)
	if err := c.send(fxpInit, u32(nil, 3)); err != nil {
		c.Close()
		return nil, err
	}
	p, err := c.recv()
	if err != nil {
		c.Close()
		return nil, err
	}
	if p.typ != fxpVersion || len(p.data) < 4 {
		c.Close()
		return nil, fmt.Errorf("want VERSION, got packet type %d", p.typ)
	}
	c.version = binary.BigEndian.Uint32(p.data)
	c.exts = map[string]string{}
	d := &decoder{b: p.data[4:]}
	for len(d.b) > 0 && d.err == nil {
		name, val := d.str(), d.str()
		if d.err == nil {
			c.exts[name] = val
		}
	}
	return c, nil
}

func (c *rawSFTP) readLoop(r io.Reader) {
	defer close(c.readerDone)
	defer close(c.replies)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n < 1 || n > 1<<20 {
			c.mu.Lock()
			c.readErr = fmt.Errorf("packet length %d", n)
			c.mu.Unlock()
			return
		}
		data := make([]byte, n-1)
		if _, err := io.ReadFull(r, data); err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
		c.replies <- rawPacket{typ: hdr[4], data: data}
	}
}

// Close ends the channel and waits, at most rawTimeout, for the reader
// to see the end.
func (c *rawSFTP) Close() error {
	c.w.Close()
	err := c.sess.Close()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	deadline := time.After(rawTimeout)
	for {
		select {
		case _, ok := <-c.replies:
			if !ok {
				return err
			}
		case <-deadline:
			return errors.Join(err, errors.New("sftp reader did not end"))
		}
	}
}

func (c *rawSFTP) send(typ byte, payload []byte) error {
	b := u32(nil, uint32(len(payload)+1))
	b = append(b, typ)
	b = append(b, payload...)
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func (c *rawSFTP) recv() (rawPacket, error) {
	select {
	case p, ok := <-c.replies:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return rawPacket{}, fmt.Errorf("connection closed: %w", c.readErr)
		}
		return p, nil
	case <-time.After(rawTimeout):
		return rawPacket{}, fmt.Errorf("no answer within %v", rawTimeout)
	}
}

// request sends one request (its id is added) and decodes the answer.
func (c *rawSFTP) request(typ byte, payload []byte) (reply, error) {
	id := c.nextID
	c.nextID++
	if err := c.send(typ, append(u32(nil, id), payload...)); err != nil {
		return reply{}, err
	}
	p, err := c.recv()
	if err != nil {
		return reply{}, err
	}
	d := &decoder{b: p.data}
	if got := d.u32(); got != id {
		return reply{}, fmt.Errorf("answer to request %d has id %d", id, got)
	}
	r := reply{Type: p.typ}
	switch p.typ {
	case fxpStatus:
		r.Code = d.u32()
		if len(d.b) > 0 {
			r.Msg = d.str()
		}
	case fxpHandle:
		r.Handle = d.str()
	case fxpData:
		r.Data = []byte(d.str())
	case fxpName:
		n := d.u32()
		for i := uint32(0); i < n && d.err == nil && i < 100000; i++ {
			e := nameEntry{Name: d.str(), Long: d.str()}
			e.Attrs = d.attrs()
			r.Names = append(r.Names, e)
		}
	case fxpAttrs:
		r.Attrs = d.attrs()
	case fxpExtendedReply:
		r.Data = d.b
		d.b = nil
	default:
		return r, fmt.Errorf("unexpected packet type %d", p.typ)
	}
	if d.err != nil {
		return r, fmt.Errorf("decoding packet type %d: %w", p.typ, d.err)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("short packet")

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.err = errShort
		d.b = nil
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	return uint64(d.u32())<<32 | uint64(d.u32())
}

func (d *decoder) str() string {
	n := d.u32()
	if uint32(len(d.b)) < n {
		d.err = errShort
		d.b = nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) attrs() attrs {
	a := attrs{Flags: d.u32()}
	if a.Flags&attrSize != 0 {
		a.Size = d.u64()
	}
	if a.Flags&attrUIDGID != 0 {
		a.UID, a.GID = d.u32(), d.u32()
	}
	if a.Flags&attrPerms != 0 {
		a.Perms = d.u32()
	}
	if a.Flags&attrACModTim != 0 {
		a.Atime, a.Mtime = d.u32(), d.u32()
	}
	if a.Flags&0x80000000 != 0 {
		n := d.u32()
		for i := uint32(0); i < n && d.err == nil && i < 1000; i++ {
			a.Ext = append(a.Ext, [2]string{d.str(), d.str()})
		}
	}
	return a
}

// Convenience wrappers, one per request type.

func (c *rawSFTP) open(path string, pflags uint32, a attrs) (reply, error) {
	return c.request(fxpOpen, append(u32(str(nil, path), pflags), a.marshal()...))
}

func (c *rawSFTP) close(h string) (reply, error) { return c.request(fxpClose, str(nil, h)) }

func (c *rawSFTP) read(h string, off uint64, n uint32) (reply, error) {
	return c.request(fxpRead, u32(binary.BigEndian.AppendUint64(str(nil, h), off), n))
}

func (c *rawSFTP) write(h string, off uint64, data []byte) (reply, error) {
	return c.request(fxpWrite, str(binary.BigEndian.AppendUint64(str(nil, h), off), string(data)))
}

func (c *rawSFTP) pathOp(typ byte, path string) (reply, error) {
	return c.request(typ, str(nil, path))
}

func (c *rawSFTP) setstat(path string, a attrs) (reply, error) {
	return c.request(fxpSetstat, append(str(nil, path), a.marshal()...))
}

func (c *rawSFTP) fsetstat(h string, a attrs) (reply, error) {
	return c.request(fxpFsetstat, append(str(nil, h), a.marshal()...))
}

func (c *rawSFTP) mkdir(path string, a attrs) (reply, error) {
	return c.request(fxpMkdir, append(str(nil, path), a.marshal()...))
}

func (c *rawSFTP) twoPaths(typ byte, a, b string) (reply, error) {
	return c.request(typ, str(str(nil, a), b))
}

// symlink sends OpenSSH's argument order: target first, then the link's
// path (the reverse of the draft, as every server and client does).
func (c *rawSFTP) symlink(target, link string) (reply, error) {
	return c.twoPaths(fxpSymlink, target, link)
}

func (c *rawSFTP) extended(name string, payload []byte) (reply, error) {
	return c.request(fxpExtended, append(str(nil, name), payload...))
}

// readdirAll opens path, reads every entry (at most 100 READDIRs) and
// closes it. It returns the first failing answer.
func (c *rawSFTP) readdirAll(path string) ([]nameEntry, reply, error) {
	r, err := c.pathOp(fxpOpendir, path)
	if err != nil || !r.ok() {
		return nil, r, err
	}
	h := r.Handle
	defer c.close(h) //nolint:errcheck // best effort; the answer was what counts
	var all []nameEntry
	for i := 0; i < 100; i++ {
		r, err = c.request(fxpReaddir, str(nil, h))
		if err != nil {
			return nil, r, err
		}
		if r.Type == fxpStatus {
			if r.Code == 1 { // EOF
				sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
				return all, reply{Type: fxpStatus}, nil
			}
			return nil, r, nil
		}
		all = append(all, r.Names...)
	}
	return nil, r, errors.New("directory did not end within 100 READDIRs")
}

// extNames lists the server's extensions as "name=data", sorted.
func (c *rawSFTP) extNames() string {
	var l []string
	for k, v := range c.exts {
		l = append(l, k+"="+v)
	}
	sort.Strings(l)
	return strings.Join(l, " ")
}
