package sftp

// Tests of the upgate fork's patches (UPGATE.md). Each runs the request
// server and this package's client over a loopback TCP connection.

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// forkPair serves h on one end of a loopback TCP connection and returns a
// client on the other; both are closed when the test ends.
func forkPair(t *testing.T, h Handlers, opts ...ClientOption) *Client {
	t.Helper()
	return forkPairServer(t, h, nil, opts...)
}

// forkPairServer is forkPair with request server options.
func forkPairServer(t *testing.T, h Handlers, srvOpts []RequestServerOption, opts ...ClientOption) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	srvConn := make(chan net.Conn, 1)
	go func() {
		defer close(done)
		c, err := lis.Accept()
		if err != nil {
			return
		}
		srvConn <- c
		rs := NewRequestServer(c, h, srvOpts...)
		_ = rs.Serve()
		rs.Close()
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewClientPipe(c, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		select {
		case sc := <-srvConn:
			sc.Close()
		default:
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("request server did not stop")
		}
	})
	return cli
}

// recorder wraps the in-memory example handler and records the requests
// it sees.
type recorder struct {
	*root
	mu   sync.Mutex
	reqs []*Request
	file any // returned from Filewrite instead of the memory file, if set
}

func (r *recorder) record(req *Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
}

func (r *recorder) last(method string) *Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].Method == method {
			return r.reqs[i]
		}
	}
	return nil
}

func (r *recorder) Filewrite(req *Request) (io.WriterAt, error) {
	r.record(req)
	if r.file != nil {
		return r.file.(io.WriterAt), nil
	}
	return r.root.Filewrite(req)
}

// OpenFile records the request and opens file for reading and writing,
// if set and it can (the in-memory file otherwise).
func (r *recorder) OpenFile(req *Request) (WriterAtReaderAt, error) {
	r.record(req)
	if rw, ok := r.file.(WriterAtReaderAt); ok {
		return rw, nil
	}
	return r.root.OpenFile(req)
}

// Fileread records the request and reads from memory (the example
// handler itself refuses opens without READ).
func (r *recorder) Fileread(req *Request) (io.ReaderAt, error) {
	r.record(req)
	cp := req.copy()
	cp.Flags |= sshFxfRead
	return r.root.Fileread(cp)
}

func (r *recorder) Filecmd(req *Request) error {
	r.record(req)
	return r.root.Filecmd(req)
}

func newRecorder() *recorder {
	return &recorder{root: InMemHandler().FileGet.(*root)}
}

func (r *recorder) handlers() Handlers { return Handlers{r, r, r, r.root} }

// send sends a raw packet and returns the reply's type and data.
func send(t *testing.T, c *Client, p idmarshaler) (fxp, []byte) {
	t.Helper()
	typ, data, err := c.clientConn.sendPacket(context.Background(), nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return typ, data
}

// statusOf decodes a STATUS reply; OK is nil.
func statusOf(data []byte) error {
	id, _ := unmarshalUint32(data)
	err := unmarshalStatus(id, data)
	if se, ok := err.(*StatusError); ok && se.Code == sshFxOk {
		return nil
	}
	return err
}

func TestForkOpenAttributes(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	typ, data := send(t, c, &sshFxpOpenPacket{
		ID: c.nextID(), Path: "/new", Pflags: sshFxfWrite | sshFxfCreat | sshFxfTrunc,
		Flags: sshFileXferAttrPermissions, Attrs: &FileStat{Mode: 0o640},
	})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN answered type %d: %v", typ, statusOf(data))
	}
	req := rec.last("Put")
	if req == nil {
		t.Fatal("no Put request")
	}
	if !req.Pflags().Creat || !req.Pflags().Trunc {
		t.Errorf("pflags %+v lost CREAT/TRUNC", req.Pflags())
	}
	if !req.AttrFlags().Permissions {
		t.Fatalf("attribute flags %+v: permissions missing", req.AttrFlags())
	}
	if got := req.Attributes().FileMode().Perm(); got != 0o640 {
		t.Errorf("OPEN permissions = %o, want 640", got)
	}
}

func TestForkMkdirAttributes(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	typ, data := send(t, c, &sshFxpMkdirPacket{ID: c.nextID(), Path: "/private", Flags: sshFileXferAttrPermissions,
		Attrs: marshalFileStat(nil, sshFileXferAttrPermissions, &FileStat{Mode: 0o700})})
	if typ != sshFxpStatus {
		t.Fatalf("MKDIR answered type %d", typ)
	}
	if err := statusOf(data); err != nil {
		t.Fatalf("MKDIR: %v", err)
	}
	req := rec.last("Mkdir")
	if req == nil || !req.AttrFlags().Permissions {
		t.Fatalf("Mkdir request %+v carries no permissions", req)
	}
	if got := req.Attributes().FileMode().Perm(); got != 0o700 {
		t.Errorf("MKDIR permissions = %o, want 700", got)
	}
}

func TestForkOpenWithoutFlagsReads(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	f, err := c.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: 0})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN with pflags 0 answered type %d: %v", typ, statusOf(data))
	}
	if rec.last("Get") == nil {
		t.Fatal("OPEN with pflags 0 did not reach Fileread")
	}
	handle, _ := unmarshalString(data[4:])
	typ, data = send(t, c, &sshFxpReadPacket{ID: c.nextID(), Handle: handle, Offset: 0, Len: 100})
	if typ != sshFxpData {
		t.Fatalf("READ answered type %d: %v", typ, statusOf(data))
	}
	if n, rest := unmarshalUint32(data[4:]); string(rest[:n]) != "hello" {
		t.Errorf("read %q, want hello", rest[:n])
	}
}

// appender appends every WriteAt at its end, whatever the offset, as
// OpenSSH does on an APPEND handle; a short sleep per call lets
// concurrent workers overtake one another.
type appender struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (a *appender) WriteAt(p []byte, _ int64) (int, error) {
	a.mu.Lock()
	a.n++
	d := time.Duration(a.n%3) * time.Millisecond
	a.mu.Unlock()
	time.Sleep(d)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.Write(p)
}

func TestForkAppendWritesInOrder(t *testing.T) {
	rec := newRecorder()
	app := &appender{}
	rec.file = app
	c := forkPair(t, rec.handlers(), UseConcurrentWrites(true), MaxPacketUnchecked(4096))
	f, err := c.OpenFile("/log", os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 256<<10)
	for i := range want {
		want[i] = byte(i / 4096) // every packet different
	}
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if !bytes.Equal(app.buf.Bytes(), want) {
		t.Fatalf("appended %d bytes out of order (first difference near packet %d)", app.buf.Len(), firstDiff(app.buf.Bytes(), want)/4096)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// statFile is an open file that describes and changes itself.
type statFile struct {
	appender
	mu    sync.Mutex
	attrs []*Request
}

func (s *statFile) Stat() (os.FileInfo, error) {
	return &memFile{name: "open", content: make([]byte, 12345), modtime: time.Unix(1e9, 0)}, nil
}

func (s *statFile) SetStat(r *Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attrs = append(s.attrs, r)
	return nil
}

func TestForkFstatAndFsetstatUseTheOpenFile(t *testing.T) {
	rec := newRecorder()
	sf := &statFile{}
	rec.file = sf
	c := forkPair(t, rec.handlers())
	f, err := c.OpenFile("/gone", os.O_WRONLY|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat() // FSTAT; "/gone" does not exist by path
	if err != nil {
		t.Fatalf("FSTAT: %v", err)
	}
	if fi.Size() != 12345 {
		t.Errorf("FSTAT size = %d, want the open file's 12345", fi.Size())
	}
	if err := f.Chmod(0o600); err != nil { // FSETSTAT
		t.Fatalf("FSETSTAT: %v", err)
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if len(sf.attrs) != 1 {
		t.Fatalf("SetStat called %d times, want 1", len(sf.attrs))
	}
	r := sf.attrs[0]
	if !r.AttrFlags().Permissions || r.Attributes().FileMode().Perm() != 0o600 || r.Filepath != "/gone" {
		t.Errorf("SetStat got %s flags %+v mode %o", r.Filepath, r.AttrFlags(), r.Attributes().FileMode().Perm())
	}
	if req := rec.last("Setstat"); req != nil {
		t.Errorf("FSETSTAT also went to Filecmd as a path Setstat")
	}
}

// atimeInfo is a FileInfo whose Sys is a stat(2) result with an atime
// apart from its mtime.
type atimeInfo struct{ memFile }

func (a *atimeInfo) Sys() any {
	return &syscall.Stat_t{Uid: 33, Gid: 33, Atim: syscall.Timespec{Sec: 1000}}
}

type atimeLister struct{ *root }

func (l atimeLister) Filelist(r *Request) (ListerAt, error) {
	if r.Method == "Stat" {
		return listerat{&atimeInfo{memFile{name: "f", modtime: time.Unix(2000, 0)}}}, nil
	}
	return l.root.Filelist(r)
}

func TestForkStatCarriesAtime(t *testing.T) {
	r := InMemHandler().FileGet.(*root)
	c := forkPair(t, Handlers{r, r, r, atimeLister{r}})
	fi, err := c.Stat("/f")
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*FileStat)
	if st.Atime != 1000 || st.Mtime != 2000 {
		t.Errorf("atime %d mtime %d, want 1000 and 2000", st.Atime, st.Mtime)
	}
	if st.UID != 33 || st.GID != 33 {
		t.Errorf("uid/gid %d/%d, want 33/33", st.UID, st.GID)
	}
}

func TestForkWriteOnReadHandle(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	f, err := c.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello"))
	f.Close()
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: sshFxfRead})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN answered type %d", typ)
	}
	handle, _ := unmarshalString(data[4:])
	typ, data = send(t, c, &sshFxpWritePacket{ID: c.nextID(), Handle: handle, Offset: 0, Length: 1, Data: []byte("X")})
	if typ != sshFxpStatus {
		t.Fatalf("WRITE on a read handle answered type %d, want a status", typ)
	}
	if err := statusOf(data); err == nil || err.(*StatusError).Code != sshFxNoSuchFile {
		t.Errorf("WRITE on a read handle: %v, want NO_SUCH_FILE (EBADF, as OpenSSH)", err)
	}
	send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: handle})
	// Closed: the handle is stale now.
	_, data = send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: handle})
	if err := statusOf(data); err == nil || err.(*StatusError).Code != sshFxNoSuchFile {
		t.Errorf("CLOSE of a stale handle: %v, want NO_SUCH_FILE", err)
	}
}

// syncFile counts Sync calls.
type syncFile struct {
	appender
	syncs int
}

func (s *syncFile) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncs++
	return nil
}

func TestForkExtensions(t *testing.T) {
	rec := newRecorder()
	sf := &syncFile{}
	rec.file = sf
	c := forkPairServer(t, rec.handlers(), []RequestServerOption{WithRSMaxOpenHandles(3)})
	for _, name := range []string{"fsync@openssh.com", "fstatvfs@openssh.com", "limits@openssh.com",
		"expand-path@openssh.com", "home-directory", "users-groups-by-id@openssh.com",
		"hardlink@openssh.com", "posix-rename@openssh.com", "statvfs@openssh.com"} {
		if _, ok := c.HasExtension(name); !ok {
			t.Errorf("%s not advertised", name)
		}
	}

	f, err := c.OpenFile("/f", os.O_WRONLY|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil { // fsync@openssh.com
		t.Fatalf("fsync: %v", err)
	}
	sf.mu.Lock()
	if sf.syncs != 1 {
		t.Errorf("Sync called %d times, want 1", sf.syncs)
	}
	sf.mu.Unlock()

	ext := func(name string, args ...string) (fxp, []byte) {
		t.Helper()
		data := marshalString(nil, name)
		for _, a := range args {
			data = marshalString(data, a)
		}
		return send(t, c, &rawExtended{ID: c.nextID(), data: data})
	}
	typ, data := ext("limits@openssh.com")
	if typ != sshFxpExtendedReply || len(data) != 4+32 {
		t.Fatalf("limits: type %d, %d bytes", typ, len(data))
	}
	if handles := binary.BigEndian.Uint64(data[4+24:]); handles != 3 {
		t.Errorf("limits: max-open-handles %d, want 3", handles)
	}
	typ, data = ext("expand-path@openssh.com", "~/d")
	if typ != sshFxpName || !strings.Contains(string(data), "/d") {
		t.Errorf("expand-path ~/d: type %d %q", typ, data)
	}
	typ, data = ext("home-directory", "anyone")
	if typ != sshFxpName || !strings.Contains(string(data), "\x00\x00\x00\x01/") {
		t.Errorf("home-directory: type %d %q", typ, data)
	}
	ids := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0), 1000)
	typ, data = ext("users-groups-by-id@openssh.com", string(ids), string(binary.BigEndian.AppendUint32(nil, 0)))
	// Two unknown user names ("", "") and one group name, each an SSH
	// string inside an SSH string.
	want := marshalString(marshalString(binary.BigEndian.AppendUint32(nil, c.nextID()-1), string(marshalString(marshalString(nil, ""), ""))), string(marshalString(nil, "")))
	if typ != sshFxpExtendedReply || string(data) != string(want) {
		t.Errorf("users-groups-by-id: type %d %x, want %x", typ, data, want)
	}

	// The handle limit: f is one of 3.
	g, err := c.OpenFile("/g", os.O_WRONLY|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.OpenFile("/h", os.O_WRONLY|os.O_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenFile("/i", os.O_WRONLY|os.O_CREATE); err == nil || !strings.Contains(err.Error(), "handles already open") {
		t.Errorf("a 4th open handle: %v, want a refusal naming the limit", err)
	}
	if _, err := c.ReadDir("/"); err == nil {
		t.Errorf("OPENDIR beyond the limit succeeded")
	}
	g.Close()
	if h2, err := c.OpenFile("/i", os.O_WRONLY|os.O_CREATE); err != nil {
		t.Errorf("open after a close made room: %v", err)
	} else {
		h2.Close()
	}
	d.Close()
	f.Close()
}

// rawExtended is an SSH_FXP_EXTENDED request whose data (name and
// arguments) the test builds.
type rawExtended struct {
	ID   uint32
	data []byte
}

func (p *rawExtended) id() uint32 { return p.ID }
func (p *rawExtended) MarshalBinary() ([]byte, error) {
	b := []byte{0, 0, 0, 0, sshFxpExtended}
	b = marshalUint32(b, p.ID)
	return append(b, p.data...), nil
}

// slashRecorder records whether Stat requests came with a trailing slash,
// and renames' targets.
type slashRecorder struct {
	*root
	mu      sync.Mutex
	slashs  []bool
	targets []bool
}

// PosixRename records the request's slashes and refuses the rename.
func (s *slashRecorder) PosixRename(r *Request) error {
	s.mu.Lock()
	s.slashs = append(s.slashs, r.TrailingSlash())
	s.targets = append(s.targets, r.TargetTrailingSlash())
	s.mu.Unlock()
	return os.ErrPermission
}

// Filecmd records a RENAME's target slash and refuses it; it serves the
// other commands.
func (s *slashRecorder) Filecmd(r *Request) error {
	if r.Method != "Rename" {
		return s.root.Filecmd(r)
	}
	s.mu.Lock()
	s.targets = append(s.targets, r.TargetTrailingSlash())
	s.mu.Unlock()
	return os.ErrPermission
}

func (s *slashRecorder) Filelist(r *Request) (ListerAt, error) {
	s.mu.Lock()
	s.slashs = append(s.slashs, r.TrailingSlash())
	s.mu.Unlock()
	return s.root.Filelist(r)
}

func TestForkTrailingSlash(t *testing.T) {
	r := InMemHandler().FileGet.(*root)
	rec := &slashRecorder{root: r}
	c := forkPair(t, Handlers{r, r, r, rec})
	if err := c.Mkdir("/d"); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Stat("/d/")
	_, _ = c.Stat("/d")
	_, _ = c.Stat("/")
	rec.mu.Lock()
	if len(rec.slashs) != 3 || !rec.slashs[0] || rec.slashs[1] || rec.slashs[2] {
		t.Errorf("TrailingSlash for /d/, /d, / = %v, want [true false false]", rec.slashs)
	}
	rec.mu.Unlock()
	// posix-rename's request is built apart (patch 16); the handler
	// for it is the FileCmd one.
	rn := &slashRecorder{root: r}
	c2 := forkPair(t, Handlers{r, r, rn, r})
	_ = c2.PosixRename("/d/", "/e")
	_ = c2.PosixRename("/d", "/e")
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if len(rn.slashs) != 2 || !rn.slashs[0] || rn.slashs[1] {
		t.Errorf("TrailingSlash for posix-rename /d/, /d = %v, want [true false]", rn.slashs)
	}
}

// lsetstatRecorder is a recorder whose FileCmd serves lsetstat.
type lsetstatRecorder struct{ *recorder }

func (l lsetstatRecorder) Lsetstat(r *Request) error {
	l.record(r)
	return nil
}

func TestForkLsetstatAndCopyData(t *testing.T) {
	// Without an Lsetstat handler lsetstat is not advertised.
	plain := newRecorder()
	if _, ok := forkPair(t, plain.handlers()).HasExtension("lsetstat@openssh.com"); ok {
		t.Error("lsetstat advertised without an LsetstatFileCmder")
	}

	rec := newRecorder()
	ls := lsetstatRecorder{rec}
	c := forkPair(t, Handlers{rec, rec, ls, rec.root})
	if _, ok := c.HasExtension("lsetstat@openssh.com"); !ok {
		t.Fatal("lsetstat not advertised")
	}
	attrs := marshalFileStat(nil, sshFileXferAttrACmodTime, &FileStat{Atime: 1000, Mtime: 2000})
	data := append(marshalString(marshalString(nil, "lsetstat@openssh.com"), "/ln"), binary.BigEndian.AppendUint32(nil, sshFileXferAttrACmodTime)...)
	_, reply := send(t, c, &rawExtended{ID: c.nextID(), data: append(data, attrs...)})
	if err := statusOf(reply); err != nil {
		t.Fatalf("lsetstat: %v", err)
	}
	r := rec.last("Lsetstat")
	if r == nil || r.Filepath != "/ln" || !r.AttrFlags().Acmodtime || r.Attributes().Atime != 1000 || r.Attributes().Mtime != 2000 {
		t.Fatalf("Lsetstat request %+v", r)
	}

	// copy-data between two handles.
	f, err := c.Create("/src")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello, copy"))
	f.Close()
	open := func(p string, pflags uint32) string {
		typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: p, Pflags: pflags})
		if typ != sshFxpHandle {
			t.Fatalf("open %s: %v", p, statusOf(data))
		}
		h, _ := unmarshalString(data[4:])
		return h
	}
	src := open("/src", sshFxfRead)
	dst := open("/dst", sshFxfWrite|sshFxfCreat|sshFxfTrunc)
	cp := marshalString(nil, "copy-data")
	cp = binary.BigEndian.AppendUint64(marshalString(cp, src), 7)
	cp = binary.BigEndian.AppendUint64(cp, 0) // to the end
	cp = binary.BigEndian.AppendUint64(marshalString(cp, dst), 0)
	if _, reply := send(t, c, &rawExtended{ID: c.nextID(), data: cp}); statusOf(reply) != nil {
		t.Fatalf("copy-data: %v", statusOf(reply))
	}
	send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: src})
	send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: dst})
	g, err := c.Open("/dst")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got, _ := io.ReadAll(g)
	if string(got) != "copy" {
		t.Errorf("copied %q, want \"copy\"", got)
	}
}

// TestForkCopyDataAsSftpServer (patch 20): one handle for both ends, or
// two handles of one path, FAILURE; a read-only destination fails only
// once there is something to write; a source that ends within the one
// piece asked for is OK, and EOF where a later piece finds nothing.
func TestForkCopyDataAsSftpServer(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	for p, content := range map[string]string{"/a": "abcdef", "/b": "xyz", "/empty": ""} {
		f, err := c.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(content))
		f.Close()
	}
	open := func(p string, pflags uint32) string {
		typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: p, Pflags: pflags})
		if typ != sshFxpHandle {
			t.Fatalf("open %s: %v", p, statusOf(data))
		}
		h, _ := unmarshalString(data[4:])
		return h
	}
	code := func(from string, off, n uint64, to string, off2 uint64) uint32 {
		cp := binary.BigEndian.AppendUint64(marshalString(marshalString(nil, "copy-data"), from), off)
		cp = binary.BigEndian.AppendUint64(cp, n)
		cp = binary.BigEndian.AppendUint64(marshalString(cp, to), off2)
		_, reply := send(t, c, &rawExtended{ID: c.nextID(), data: cp})
		err := statusOf(reply)
		if err == nil {
			return sshFxOk
		}
		if se, ok := err.(*StatusError); ok {
			return se.Code
		}
		t.Fatalf("copy-data: %v", err)
		return 0
	}
	a := open("/a", sshFxfRead|sshFxfWrite)
	a2 := open("/a", sshFxfRead|sshFxfWrite)
	ro := open("/b", sshFxfRead)
	empty := open("/empty", sshFxfRead)
	dst := open("/dst", sshFxfWrite|sshFxfCreat|sshFxfTrunc)
	for _, tc := range []struct {
		what   string
		from   string
		off, n uint64
		to     string
		off2   uint64
		want   uint32
	}{
		{"one handle, ranges apart", a, 0, 2, a, 4, sshFxFailure},
		{"two handles of one path", a, 0, 2, a2, 4, sshFxFailure},
		{"nothing into a read-only handle", empty, 0, 0, ro, 0, sshFxOk},
		{"something into a read-only handle", a, 0, 2, ro, 0, sshFxNoSuchFile},
		{"past the end, one piece", a, 100, 5, dst, 0, sshFxOk},
		{"past the end, a second piece asked for", a, 100, 70 << 10, dst, 0, sshFxEOF},
		{"to the end", a, 2, 0, dst, 0, sshFxOk},
	} {
		if got := code(tc.from, tc.off, tc.n, tc.to, tc.off2); got != tc.want {
			t.Errorf("copy-data, %s: status %d, want %d", tc.what, got, tc.want)
		}
	}
	for _, h := range []string{a, a2, ro, empty, dst} {
		send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: h})
	}
	g, err := c.Open("/dst")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got, _ := io.ReadAll(g); string(got) != "cdef" {
		t.Errorf("/dst holds %q, want \"cdef\"", got)
	}

	// A copy to the end into the same file through a link, past its
	// offset, stops at the end the file had when it began: sftp-server's
	// reads what it wrote, for ever.
	if err := c.Symlink("/a", "/al"); err != nil {
		t.Fatal(err)
	}
	a, al := open("/a", sshFxfRead|sshFxfWrite), open("/al", sshFxfRead|sshFxfWrite)
	done := make(chan uint32, 1)
	go func() { done <- code(a, 0, 0, al, 3) }()
	select {
	case got := <-done:
		if got != sshFxOk {
			t.Errorf("copy-data to the end into the file itself through a link: status %d, want OK", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("copy-data to the end into the file itself through a link: no answer within 10s")
	}
	for _, h := range []string{a, al} {
		send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: h})
	}
	g2, err := c.Open("/a")
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	if got, _ := io.ReadAll(g2); string(got) != "abcabcdef" {
		t.Errorf("/a holds %q, want \"abcabcdef\"", got)
	}
}

// sizeLister answers Stat with the size the appender holds now.
type sizeLister struct {
	*root
	app *appender
}

func (l sizeLister) Filelist(r *Request) (ListerAt, error) {
	if r.Method != "Stat" {
		return l.root.Filelist(r)
	}
	l.app.mu.Lock()
	n := l.app.buf.Len()
	l.app.mu.Unlock()
	return listerat{&memFile{name: "f", content: make([]byte, n), modtime: time.Now()}}, nil
}

// TestForkRequestsFollowEarlierWrites: a STAT sent after WRITEs (still in
// flight: the client waits for no reply) answers after them, as OpenSSH's
// one-at-a-time sftp-server does; upstream served it at once.
func TestForkRequestsFollowEarlierWrites(t *testing.T) {
	rec := newRecorder()
	app := &appender{}
	rec.file = app
	c := forkPair(t, Handlers{rec, rec, rec, sizeLister{rec.root, app}})
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: sshFxfWrite | sshFxfCreat})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN: %v", statusOf(data))
	}
	handle, _ := unmarshalString(data[4:])
	const n, size = 32, 1000
	replies := make(chan result, n)
	for i := range n {
		c.clientConn.dispatchRequest(replies, &sshFxpWritePacket{ID: c.nextID(), Handle: handle, Offset: uint64(i * size), Length: size, Data: make([]byte, size)})
	}
	typ, data = send(t, c, &sshFxpStatPacket{ID: c.nextID(), Path: "/f"})
	if typ != sshFxpAttrs {
		t.Fatalf("STAT answered type %d: %v", typ, statusOf(data))
	}
	attrs, _, err := unmarshalFileStat(binary.BigEndian.Uint32(data[4:]), data[8:])
	if err != nil {
		t.Fatal(err)
	}
	if attrs.Size != n*size {
		t.Errorf("STAT after %d WRITEs in flight answered size %d, want %d", n, attrs.Size, n*size)
	}
	for range n {
		<-replies
	}
}

// orderSender records the order ids of what it sends.
type orderSender struct {
	mu   sync.Mutex
	sent []uint32
}

func (s *orderSender) sendPacket(p encoding.BinaryMarshaler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, p.(orderedResponse).orderID())
	return nil
}

// TestForkPacketManagerOrder: responses readied by many workers at once,
// in any order, go out in the order their requests came, each once (the
// workers send them themselves, under the manager's lock).
func TestForkPacketManagerOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		sender := &orderSender{}
		s := newPktMgr(sender)
		n := 1 + rng.IntN(32)
		reqs := make([]orderedRequest, n)
		for i := range reqs {
			reqs[i] = s.newOrderedRequest(&sshFxpStatPacket{ID: uint32(i)})
			s.incomingPacket(reqs[i])
		}
		var wg sync.WaitGroup
		for _, i := range rng.Perm(n) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.readyPacket(s.newOrderedResponse(&sshFxpStatusPacket{ID: uint32(i)}, reqs[i].orderID()))
			}()
		}
		wg.Wait()
		s.close()
		if len(sender.sent) != n {
			t.Fatalf("round %d: %d responses sent, want %d", round, len(sender.sent), n)
		}
		for i, oid := range sender.sent {
			if oid != reqs[i].orderID() {
				t.Fatalf("round %d: sent order ids %v, want them in request order", round, sender.sent)
			}
		}
	}
}

func TestForkLongnameDate(t *testing.T) {
	now := time.Date(2026, time.December, 6, 6, 2, 30, 200_000_000, time.Local)
	const halfYear = 365 * 24 * time.Hour / 2
	for _, tc := range []struct {
		mtime time.Time
		want  string
	}{
		{time.Date(2033, time.May, 18, 3, 33, 20, 0, time.Local), "May 18  2033"},
		{time.Date(2004, time.November, 9, 11, 33, 20, 0, time.Local), "Nov  9  2004"},
		{now.Add(-time.Hour), "Dec  6 05:02"},
		{now.Add(time.Minute), "Dec  6  2026"},            // the future: the year
		{now.Add(500 * time.Millisecond), "Dec  6 06:02"}, // the same second is not the future
		{now.Add(-halfYear + 10*time.Second), "Jun  6 18:02"},
		{now.Add(-halfYear - 10*time.Second), "Jun  6  2026"},
	} {
		if got := lsTime(tc.mtime, now); got != tc.want {
			t.Errorf("lsTime(%v): %q, want %q", tc.mtime, got, tc.want)
		}
	}
	fi := &fileInfo{name: "file.txt", stat: &FileStat{Size: 13, Mode: 0o100644, Mtime: 1100000000, UID: 1000, GID: 100}}
	want := "-rw-r--r--    1 1000     100            13 " + time.Unix(1100000000, 0).Format("Jan _2  2006") + " file.txt"
	if got := runLs(nil, fi); got != want {
		t.Errorf("runLs:\n%q, want\n%q", got, want)
	}
}

func TestForkOpenAccessFollowsReadWrite(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	open := func(path string, pflags uint32) string {
		t.Helper()
		typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: path, Pflags: pflags})
		if typ != sshFxpHandle {
			t.Fatalf("OPEN %s %#x answered type %d: %v", path, pflags, typ, statusOf(data))
		}
		h, _ := unmarshalString(data[4:])
		return h
	}
	code := func(typ fxp, data []byte) string {
		switch typ {
		case sshFxpData:
			n, rest := unmarshalUint32(data[4:])
			return "DATA " + string(rest[:n])
		case sshFxpStatus:
			err := statusOf(data)
			if err == nil {
				return "OK"
			}
			if se, ok := err.(*StatusError); ok {
				return fx(se.Code).String()
			}
			return err.Error()
		}
		return fmt.Sprintf("type %d", typ)
	}
	write := func(h string) string {
		return code(send(t, c, &sshFxpWritePacket{ID: c.nextID(), Handle: h, Offset: 0, Length: 1, Data: []byte("x")}))
	}
	read := func(h string) string {
		return code(send(t, c, &sshFxpReadPacket{ID: c.nextID(), Handle: h, Offset: 0, Len: 100}))
	}
	for _, tc := range []struct {
		path        string
		pflags      uint32
		write, read string // answers to WRITE "x" at 0, then READ at 0
		size        int64  // after CLOSE
	}{
		// Without WRITE the handle is O_RDONLY, as OpenSSH's
		// flags_from_portable opens it; CREAT still creates.
		{"/rc", sshFxfRead | sshFxfCreat, "SSH_FX_NO_SUCH_FILE", "SSH_FX_EOF", 0},
		{"/c", sshFxfCreat, "SSH_FX_NO_SUCH_FILE", "SSH_FX_EOF", 0},
		{"/ra", sshFxfRead | sshFxfCreat | sshFxfAppend, "SSH_FX_NO_SUCH_FILE", "SSH_FX_EOF", 0},
		// With WRITE, as before.
		{"/up", sshFxfWrite | sshFxfCreat | sshFxfTrunc, "OK", "SSH_FX_NO_SUCH_FILE", 1},
		{"/rw", sshFxfRead | sshFxfWrite | sshFxfCreat, "OK", "DATA x", 1},
	} {
		h := open(tc.path, tc.pflags)
		if got := write(h); got != tc.write {
			t.Errorf("OPEN %s %#x: WRITE answered %s, want %s", tc.path, tc.pflags, got, tc.write)
		}
		if got := read(h); got != tc.read {
			t.Errorf("OPEN %s %#x: READ answered %s, want %s", tc.path, tc.pflags, got, tc.read)
		}
		if err := statusOf(func() []byte { _, d := send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: h}); return d }()); err != nil {
			t.Errorf("CLOSE %s: %v", tc.path, err)
		}
		if fi, err := c.Stat(tc.path); err != nil || fi.Size() != tc.size {
			t.Errorf("OPEN %s %#x: after CLOSE %v, %v; want a file of %d bytes", tc.path, tc.pflags, fi, err, tc.size)
		}
	}
}

func TestForkUnknownHandleFails(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: sshFxfRead | sshFxfWrite | sshFxfCreat})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN answered type %d: %v", typ, statusOf(data))
	}
	h, _ := unmarshalString(data[4:])
	if _, data := send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: h}); statusOf(data) != nil {
		t.Fatalf("CLOSE: %v", statusOf(data))
	}
	ext := func(name string, args ...string) []byte {
		b := marshalString(nil, name)
		for _, a := range args {
			b = marshalString(b, a)
		}
		return b
	}
	copyData := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(marshalString(ext("copy-data"), h), 0), 0)
	copyData = binary.BigEndian.AppendUint64(marshalString(copyData, h), 0)
	// OpenSSH's sftp-server: handle_to_fd or handle_to_dir fails, FAILURE;
	// CLOSE and fsync@openssh.com answer NO_SUCH_FILE.
	for _, tc := range []struct {
		what string
		pkt  idmarshaler
		want uint32
	}{
		{"READ", &sshFxpReadPacket{ID: c.nextID(), Handle: h, Len: 10}, sshFxFailure},
		{"WRITE", &sshFxpWritePacket{ID: c.nextID(), Handle: h, Length: 1, Data: []byte("x")}, sshFxFailure},
		{"FSTAT", &sshFxpFstatPacket{ID: c.nextID(), Handle: h}, sshFxFailure},
		{"FSETSTAT", &sshFxpFsetstatPacket{ID: c.nextID(), Handle: h, Flags: sshFileXferAttrSize, Attrs: []byte{0, 0, 0, 0, 0, 0, 0, 1}}, sshFxFailure},
		{"READDIR", &sshFxpReaddirPacket{ID: c.nextID(), Handle: h}, sshFxFailure},
		{"fstatvfs@openssh.com", &rawExtended{ID: c.nextID(), data: ext("fstatvfs@openssh.com", h)}, sshFxFailure},
		{"copy-data", &rawExtended{ID: c.nextID(), data: copyData}, sshFxFailure},
		{"fsync@openssh.com", &rawExtended{ID: c.nextID(), data: ext("fsync@openssh.com", h)}, sshFxNoSuchFile},
		{"CLOSE", &sshFxpClosePacket{ID: c.nextID(), Handle: h}, sshFxNoSuchFile},
	} {
		typ, data := send(t, c, tc.pkt)
		se, ok := statusOf(data).(*StatusError)
		if typ != sshFxpStatus || !ok || se.Code != tc.want {
			t.Errorf("%s on a closed handle: type %d, %v; want %v", tc.what, typ, statusOf(data), fx(tc.want))
		}
	}
}

func TestForkWrongHandleKindFails(t *testing.T) {
	rec := newRecorder()
	c := forkPair(t, rec.handlers())
	if err := c.Mkdir("/d"); err != nil {
		t.Fatal(err)
	}
	f, err := c.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	handle := func(p idmarshaler) string {
		t.Helper()
		typ, data := send(t, c, p)
		if typ != sshFxpHandle {
			t.Fatalf("%T answered type %d: %v", p, typ, statusOf(data))
		}
		h, _ := unmarshalString(data[4:])
		return h
	}
	dh := handle(&sshFxpOpendirPacket{ID: c.nextID(), Path: "/d"})
	fh := handle(&sshFxpOpenPacket{ID: c.nextID(), Path: "/d/f", Pflags: sshFxfRead | sshFxfWrite})
	rh := handle(&sshFxpOpenPacket{ID: c.nextID(), Path: "/d/f", Pflags: sshFxfRead})
	ext := func(name string, args ...string) []byte {
		b := marshalString(nil, name)
		for _, a := range args {
			b = marshalString(b, a)
		}
		return b
	}
	copyData := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(marshalString(ext("copy-data"), dh), 0), 0)
	copyData = binary.BigEndian.AppendUint64(marshalString(copyData, fh), 0)
	// OpenSSH's sftp-server: handle_to_fd fails for a directory handle,
	// handle_to_dir for a file handle: FAILURE; fsync NO_SUCH_FILE.
	for _, tc := range []struct {
		what string
		pkt  idmarshaler
		want uint32
	}{
		{"READ", &sshFxpReadPacket{ID: c.nextID(), Handle: dh, Len: 10}, sshFxFailure},
		{"WRITE", &sshFxpWritePacket{ID: c.nextID(), Handle: dh, Length: 1, Data: []byte("x")}, sshFxFailure},
		{"FSTAT", &sshFxpFstatPacket{ID: c.nextID(), Handle: dh}, sshFxFailure},
		{"FSETSTAT", &sshFxpFsetstatPacket{ID: c.nextID(), Handle: dh, Flags: sshFileXferAttrPermissions, Attrs: []byte{0, 0, 0o1, 0xff}}, sshFxFailure},
		{"fstatvfs@openssh.com", &rawExtended{ID: c.nextID(), data: ext("fstatvfs@openssh.com", dh)}, sshFxFailure},
		{"copy-data", &rawExtended{ID: c.nextID(), data: copyData}, sshFxFailure},
		{"fsync@openssh.com", &rawExtended{ID: c.nextID(), data: ext("fsync@openssh.com", dh)}, sshFxNoSuchFile},
		{"READDIR on a file handle", &sshFxpReaddirPacket{ID: c.nextID(), Handle: fh}, sshFxFailure},
		{"READDIR on a read-only file handle", &sshFxpReaddirPacket{ID: c.nextID(), Handle: rh}, sshFxFailure},
	} {
		typ, data := send(t, c, tc.pkt)
		se, ok := statusOf(data).(*StatusError)
		if typ != sshFxpStatus || !ok || se.Code != tc.want {
			t.Errorf("%s on a handle of the other kind: type %d, %v; want %v", tc.what, typ, statusOf(data), fx(tc.want))
		}
	}
	// The READ left the listing whole.
	typ, data := send(t, c, &sshFxpReaddirPacket{ID: c.nextID(), Handle: dh})
	if typ != sshFxpName {
		t.Fatalf("READDIR after the READ: type %d, %v", typ, statusOf(data))
	}
	if n, _ := unmarshalUint32(data[4:]); n != 1 {
		t.Errorf("READDIR after the READ: %d entries, want 1", n)
	}
}

// TestForkTargetTrailingSlash: a RENAME's and a posix-rename's new path
// keeps its trailing slash for the handler (patch 18), which rename(2)
// needs to refuse renaming a file to "name/" (ENOTDIR).
func TestForkTargetTrailingSlash(t *testing.T) {
	r := InMemHandler().FileGet.(*root)
	rec := &slashRecorder{root: r}
	c := forkPair(t, Handlers{r, r, rec, r})
	if err := c.Mkdir("/d"); err != nil {
		t.Fatal(err)
	}
	_ = c.Rename("/d", "/e/")
	_ = c.Rename("/d", "/e")
	_ = c.PosixRename("/d", "/e/")
	_ = c.PosixRename("/d", "/")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []bool{true, false, true, false}; fmt.Sprint(rec.targets) != fmt.Sprint(want) {
		t.Errorf("TargetTrailingSlash for rename to /e/, /e, posix-rename to /e/, / = %v, want %v", rec.targets, want)
	}
}

// rangeFile keeps what is written at its offsets; each call sleeps a
// little, differently, so that concurrent workers overtake one another.
type rangeFile struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func (r *rangeFile) pause() {
	r.mu.Lock()
	r.n++
	d := time.Duration(r.n%4) * 300 * time.Microsecond
	r.mu.Unlock()
	time.Sleep(d)
}

func (r *rangeFile) WriteAt(p []byte, off int64) (int, error) {
	r.pause()
	r.mu.Lock()
	defer r.mu.Unlock()
	if end := int(off) + len(p); end > len(r.buf) {
		r.buf = append(r.buf, make([]byte, end-len(r.buf))...)
	}
	return copy(r.buf[off:], p), nil
}

func (r *rangeFile) ReadAt(p []byte, off int64) (int, error) {
	r.pause()
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(off) >= len(r.buf) {
		return 0, io.EOF
	}
	n := copy(p, r.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestForkOverlappingWritesInOrder: WRITEs of one range of a handle,
// pipelined (sshfs sends them without waiting), land in the order they
// came, and a READ of it after them sees the last, as on OpenSSH's
// sftp-server, which serves one request at a time; WRITEs of other
// ranges still go to the workers at once.
func TestForkOverlappingWritesInOrder(t *testing.T) {
	rec := newRecorder()
	file := &rangeFile{}
	rec.file = file
	c := forkPair(t, Handlers{rec, rec, rec, rec.root})
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: sshFxfRead | sshFxfWrite | sshFxfCreat})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN: %v", statusOf(data))
	}
	handle, _ := unmarshalString(data[4:])
	for round := range 20 {
		const n = 16
		replies := make(chan result, 2*n)
		for i := range n {
			// Each WRITE covers bytes 0..3, shifted by one every other
			// time: all overlap the one before.
			b := bytes.Repeat([]byte{byte('a' + i)}, 4)
			c.clientConn.dispatchRequest(replies, &sshFxpWritePacket{ID: c.nextID(), Handle: handle, Offset: uint64(i % 2), Length: 4, Data: b})
		}
		readReply := make(chan result, 1)
		c.clientConn.dispatchRequest(readReply, &sshFxpReadPacket{ID: c.nextID(), Handle: handle, Offset: 0, Len: 5})
		for range n {
			if r := <-replies; r.err != nil {
				t.Fatal(r.err)
			}
		}
		r := <-readReply
		if r.err != nil {
			t.Fatal(r.err)
		}
		// The last WRITE (i = 15, 'p') covers 1..4 over the one before
		// ('o', 0..3).
		if want := "opppp"; r.typ != sshFxpData || string(r.data[8:]) != want {
			t.Fatalf("round %d: READ after the WRITEs answered type %d %q, want %q", round, r.typ, r.data, want)
		}
	}
}

// truncFile is a rangeFile that FSETSTAT truncates (FileSetStater),
// slowly, so that a WRITE served beside it would land first.
type truncFile struct{ rangeFile }

func (f *truncFile) SetStat(r *Request) error {
	time.Sleep(2 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.AttrFlags().Size {
		f.buf = f.buf[:min(len(f.buf), int(r.Attributes().Size))]
	}
	return nil
}

// TestForkWriteAfterFsetstatInOrder: a WRITE sent right after an FSETSTAT
// that truncates, without waiting for its answer, lands after the
// truncation, as on sftp-server; it used to go to a worker at once.
func TestForkWriteAfterFsetstatInOrder(t *testing.T) {
	rec := newRecorder()
	file := &truncFile{}
	rec.file = file
	c := forkPair(t, Handlers{rec, rec, rec, rec.root})
	typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: "/f", Pflags: sshFxfRead | sshFxfWrite | sshFxfCreat})
	if typ != sshFxpHandle {
		t.Fatalf("OPEN: %v", statusOf(data))
	}
	handle, _ := unmarshalString(data[4:])
	for round := range 10 {
		if typ, data := send(t, c, &sshFxpWritePacket{ID: c.nextID(), Handle: handle, Offset: 0, Length: 4, Data: []byte("abcd")}); typ != sshFxpStatus || statusOf(data) != nil {
			t.Fatalf("WRITE: %v", statusOf(data))
		}
		replies := make(chan result, 2)
		c.clientConn.dispatchRequest(replies, &sshFxpFsetstatPacket{ID: c.nextID(), Handle: handle, Flags: sshFileXferAttrSize, Attrs: []byte{0, 0, 0, 0, 0, 0, 0, 0}})
		c.clientConn.dispatchRequest(replies, &sshFxpWritePacket{ID: c.nextID(), Handle: handle, Offset: 2, Length: 1, Data: []byte("Z")})
		for range 2 {
			r := <-replies
			if r.err != nil {
				t.Fatal(r.err)
			}
			if err := statusOf(r.data); r.typ != sshFxpStatus || err != nil {
				t.Fatalf("round %d: answered type %d: %v", round, r.typ, err)
			}
		}
		file.mu.Lock()
		got := string(file.buf)
		file.mu.Unlock()
		if want := "\x00\x00Z"; got != want {
			t.Fatalf("round %d: %q after a truncation and a WRITE sent after it, want %q", round, got, want)
		}
	}
}

// slowLister holds a Stat of /slow until release closes.
type slowLister struct {
	FileLister
	release chan struct{}
}

func (l slowLister) Filelist(r *Request) (ListerAt, error) {
	if r.Filepath == "/slow" {
		<-l.release
		r = &Request{Method: r.Method, Filepath: "/"}
	}
	return l.FileLister.Filelist(r)
}

// rawAnswer is one answer a rawSession read: its type and id, and a
// STATUS's code and message.
type rawAnswer struct {
	typ  fxp
	id   uint32
	code uint32
	msg  string
}

// rawSession is a RequestServer serving h over net.Pipe, with the client
// end driven packet by packet: writes are synchronous (net.Pipe), answers
// are read as they come; served gets Serve's error.
type rawSession struct {
	t       *testing.T
	cli     net.Conn
	answers chan rawAnswer
	served  chan error
}

func newRawSession(t *testing.T, h Handlers) *rawSession {
	t.Helper()
	srv, cli := net.Pipe()
	r := &rawSession{t: t, cli: cli, answers: make(chan rawAnswer, 16), served: make(chan error, 1)}
	go func() {
		rs := NewRequestServer(srv, h)
		r.served <- rs.Serve()
		rs.Close()
	}()
	t.Cleanup(func() { cli.Close() })
	go func() {
		defer close(r.answers)
		for {
			var hdr [5]byte
			if _, err := io.ReadFull(cli, hdr[:]); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
			if _, err := io.ReadFull(cli, body); err != nil {
				return
			}
			a := rawAnswer{typ: fxp(hdr[4]), id: binary.BigEndian.Uint32(body)}
			if a.typ == sshFxpStatus {
				a.code = binary.BigEndian.Uint32(body[4:])
				a.msg, _, _ = unmarshalStringSafe(body[8:])
			}
			r.answers <- a
		}
	}()
	r.write(sshFxpInit, marshalUint32(nil, 3))
	if a := r.next("INIT"); a.typ != sshFxpVersion {
		t.Fatalf("INIT: answer %v", a.typ)
	}
	return r
}

// write sends one packet of type typ with body.
func (r *rawSession) write(typ fxp, body []byte) {
	r.t.Helper()
	b := marshalUint32(nil, uint32(1+len(body)))
	if _, err := r.cli.Write(append(append(b, byte(typ)), body...)); err != nil {
		r.t.Fatalf("send %v: %v", typ, err)
	}
}

// next is the next answer; the session's end or 10 s without one fail.
func (r *rawSession) next(what string) rawAnswer {
	r.t.Helper()
	select {
	case a, ok := <-r.answers:
		if !ok {
			r.t.Fatalf("%s: the session ended", what)
		}
		return a
	case <-time.After(10 * time.Second):
		r.t.Fatalf("%s: no answer", what)
	}
	panic("unreachable")
}

// expect checks the next answers against want (a message by substring).
func (r *rawSession) expect(want ...rawAnswer) {
	r.t.Helper()
	for _, w := range want {
		a := r.next(fmt.Sprintf("request %d", w.id))
		if a.typ != w.typ || a.id != w.id || a.code != w.code || !strings.Contains(a.msg, w.msg) {
			r.t.Errorf("answer %+v, want %+v", a, w)
		}
	}
}

// ended checks that the session ends with no more answers, and returns
// Serve's error.
func (r *rawSession) ended() error {
	r.t.Helper()
	select {
	case a, ok := <-r.answers:
		if ok {
			r.t.Errorf("answer %+v, want the session's end", a)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("the session did not end")
	}
	return <-r.served
}

func statBody(id uint32, p string) []byte { return marshalString(marshalUint32(nil, id), p) }

// TestForkBadRequests: a request of a type the server does not know is
// answered OP_UNSUPPORTED and the session goes on (upstream ended it); one
// that cannot be read ends the session, as on sftp-server, but only after
// the requests before it are answered (upstream closed the connection
// while they were still being served: their answers were lost), and it is
// answered BAD_MESSAGE first where its id can be read (patch 21).
func TestForkBadRequests(t *testing.T) {
	h := InMemHandler()
	release := make(chan struct{})
	h.FileList = slowLister{h.FileList, release}
	r := newRawSession(t, h)
	r.write(sshFxpStat, statBody(1, "/"))
	r.write(99, append(marshalUint32(nil, 2), "xx"...))
	r.write(21, statBody(3, "a")) // SFTP v6's LINK, in a v3 session
	r.write(sshFxpStat, statBody(4, "/"))
	r.expect(
		rawAnswer{typ: sshFxpAttrs, id: 1},
		rawAnswer{typ: sshFxpStatus, id: 2, code: sshFxOPUnsupported, msg: "unknown request type 99"},
		rawAnswer{typ: sshFxpStatus, id: 3, code: sshFxOPUnsupported, msg: "unknown request type 21"},
		rawAnswer{typ: sshFxpAttrs, id: 4},
	)

	// A STAT held in its handler, then an OPEN cut short, then a STAT
	// that is never read.
	r.write(sshFxpStat, statBody(5, "/slow"))
	r.write(sshFxpOpen, append(marshalUint32(nil, 6), 0, 0))
	go func() {
		// (net.Pipe: this write waits for the server to read it, or
		// fails once the session ends.)
		b := append(marshalUint32(nil, uint32(1+len(statBody(7, "/")))), byte(sshFxpStat))
		_, _ = r.cli.Write(append(b, statBody(7, "/")...))
	}()
	time.Sleep(50 * time.Millisecond) // the server has read the OPEN
	close(release)
	r.expect(
		rawAnswer{typ: sshFxpAttrs, id: 5},
		rawAnswer{typ: sshFxpStatus, id: 6, code: sshFxBadMessage, msg: "malformed SSH_FXP_OPEN request"},
	)
	if err := r.ended(); err == nil || !strings.Contains(err.Error(), "malformed SSH_FXP_OPEN request") {
		t.Errorf("Serve: %v, want the malformed request's error", err)
	}
}

// TestForkBadRequestsWithoutID: a request too short to hold its id ends
// the session unanswered (there is no id to answer), after the requests
// before it, and so does an INIT that cannot be read; an extended request
// that cannot be read is answered BAD_MESSAGE and ends it too, while one
// of an unknown name is answered OP_UNSUPPORTED and the session goes on
// (patch 21; a review).
func TestForkBadRequestsWithoutID(t *testing.T) {
	ext := func(id uint32, name string, rest ...byte) []byte {
		return append(marshalString(marshalUint32(nil, id), name), rest...)
	}
	for _, tc := range []struct {
		name   string
		typ    fxp
		body   []byte
		answer *rawAnswer // the bad request's, if any
	}{
		{"STAT of 0 bytes", sshFxpStat, nil, nil},
		{"STAT of 2 bytes", sshFxpStat, []byte{0, 0}, nil},
		{"STAT of an id alone", sshFxpStat, marshalUint32(nil, 9), &rawAnswer{typ: sshFxpStatus, id: 9, code: sshFxBadMessage, msg: "malformed SSH_FXP_STAT"}},
		{"unknown type of 2 bytes", 99, []byte{0, 0}, nil},
		{"INIT of 2 bytes", sshFxpInit, []byte{0, 3}, nil},
		{"EXTENDED of an id alone", sshFxpExtended, marshalUint32(nil, 9), &rawAnswer{typ: sshFxpStatus, id: 9, code: sshFxBadMessage, msg: "malformed SSH_FXP_EXTENDED"}},
		{"posix-rename without its paths", sshFxpExtended, ext(9, "posix-rename@openssh.com"), &rawAnswer{typ: sshFxpStatus, id: 9, code: sshFxBadMessage, msg: "malformed SSH_FXP_EXTENDED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRawSession(t, InMemHandler())
			r.write(sshFxpStat, statBody(1, "/"))
			r.write(tc.typ, tc.body)
			r.expect(rawAnswer{typ: sshFxpAttrs, id: 1})
			if tc.answer != nil {
				r.expect(*tc.answer)
			}
			if err := r.ended(); err == nil || !strings.Contains(err.Error(), "malformed") {
				t.Errorf("Serve: %v, want the malformed request's error", err)
			}
		})
	}
	t.Run("extended request of an unknown name", func(t *testing.T) {
		r := newRawSession(t, InMemHandler())
		r.write(sshFxpExtended, ext(1, "nothing@example.com"))
		r.write(sshFxpStat, statBody(2, "/"))
		r.expect(
			rawAnswer{typ: sshFxpStatus, id: 1, code: sshFxOPUnsupported},
			rawAnswer{typ: sshFxpAttrs, id: 2},
		)
	})
}

// readCounter counts the reads of the files it opens for reading.
type readCounter struct {
	*recorder
	mu    sync.Mutex
	reads int
	size  int64 // the size its files report, if not negative (a stale one)
}

func (h *readCounter) Fileread(req *Request) (io.ReaderAt, error) {
	ra, err := h.recorder.Fileread(req)
	if err != nil {
		return nil, err
	}
	return countedReader{ra, h}, nil
}

// countedReader is a file whose ReadAt calls are counted, with the
// underlying file's Size (sourceSize reads it).
type countedReader struct {
	io.ReaderAt
	h *readCounter
}

func (c countedReader) ReadAt(p []byte, off int64) (int, error) {
	c.h.mu.Lock()
	c.h.reads++
	c.h.mu.Unlock()
	return c.ReaderAt.ReadAt(p, off)
}

func (c countedReader) Size() int64 {
	if c.h.size >= 0 {
		return c.h.size
	}
	return c.ReaderAt.(interface{ Size() int64 }).Size()
}

// TestForkCopyDataReadsPastTheEnd: a copy to the end from at or past the
// source's end reads it once, as sftp-server's first pread(2), which
// moves the source's atime (upgate's TestSFTPRandom seed 24638); a copy
// to the end from inside it reads up to that end and no further.
func TestForkCopyDataReadsPastTheEnd(t *testing.T) {
	h := &readCounter{recorder: newRecorder(), size: -1}
	c := forkPair(t, Handlers{h, h, h, h.root})
	f, err := c.Create("/c")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abc"))
	f.Close()
	open := func(p string, pflags uint32) string {
		typ, data := send(t, c, &sshFxpOpenPacket{ID: c.nextID(), Path: p, Pflags: pflags})
		if typ != sshFxpHandle {
			t.Fatalf("open %s: %v", p, statusOf(data))
		}
		s, _ := unmarshalString(data[4:])
		return s
	}
	src, dst := open("/c", sshFxfRead), open("/d", sshFxfWrite|sshFxfCreat|sshFxfTrunc)
	for _, tc := range []struct {
		off       uint64
		wantReads int
	}{{4, 1}, {3, 1}, {0, 1}} {
		h.mu.Lock()
		h.reads = 0
		h.mu.Unlock()
		cp := binary.BigEndian.AppendUint64(marshalString(marshalString(nil, "copy-data"), src), tc.off)
		cp = binary.BigEndian.AppendUint64(cp, 0)
		cp = binary.BigEndian.AppendUint64(marshalString(cp, dst), 0)
		_, reply := send(t, c, &rawExtended{ID: c.nextID(), data: cp})
		if err := statusOf(reply); err != nil {
			t.Errorf("copy-data from %d to the end: %v, want OK", tc.off, err)
		}
		h.mu.Lock()
		got := h.reads
		h.mu.Unlock()
		if got != tc.wantReads {
			t.Errorf("copy-data from %d to the end of a 3-byte file: %d reads, want %d", tc.off, got, tc.wantReads)
		}
	}

	// The source grew past the size the copy found when it began (its
	// Stat says 3, it holds 6 bytes): a copy to the end stops at 3
	// wherever it starts, also from 3, where it reads once and copies
	// nothing (a review).
	if f, err = c.Create("/c"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("abcdef"))
	f.Close()
	h.mu.Lock()
	h.size = 3
	h.mu.Unlock()
	for _, tc := range []struct {
		off  uint64
		want string
	}{{0, "abc"}, {3, ""}} {
		src, dst := open("/c", sshFxfRead), open("/e", sshFxfRead|sshFxfWrite|sshFxfCreat|sshFxfTrunc)
		cp := binary.BigEndian.AppendUint64(marshalString(marshalString(nil, "copy-data"), src), tc.off)
		cp = binary.BigEndian.AppendUint64(cp, 0)
		cp = binary.BigEndian.AppendUint64(marshalString(cp, dst), 0)
		_, reply := send(t, c, &rawExtended{ID: c.nextID(), data: cp})
		if err := statusOf(reply); err != nil {
			t.Errorf("copy-data from %d to the end of a source that grew: %v, want OK", tc.off, err)
		}
		for _, hd := range []string{src, dst} {
			send(t, c, &sshFxpClosePacket{ID: c.nextID(), Handle: hd})
		}
		g, err := c.Open("/e")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(g)
		g.Close()
		if string(got) != tc.want {
			t.Errorf("copy-data from %d to the end of a source that grew from 3 to 6 bytes copied %q, want %q", tc.off, got, tc.want)
		}
	}
}
