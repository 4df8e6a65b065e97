package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/afero"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// file is an open file on an agent: an id on its GRPCFs's Session stream
// (mux.go). Requests are pipelined: writes go through the coalescer and
// the acknowledgement window (writer.go), and the first failure is
// returned by a later call and by Close; reads are served from the block
// cache, filled ahead of the reader (reader.go). Close commits;
// TransferError followed by Close, the stream ending, or a timeout aborts.
//
// Locks: mu guards the file's state and is held while sending, never
// while waiting for a reply (see the lock order in mux.go).
type file struct {
	g  *GRPCFs
	c  *muxConn // the stream the file lives on
	id uint64   // its id there: the open request's
	// name is the user-visible, clean path; Move changes it (see path).
	name   atomic.Pointer[string]
	flag   int
	sizeAt int64 // size when opened: bounds read-ahead
	// upload is the agent's id of the atomic upload this open started
	// (agentpb.SessionResponse.upload_id), "" for any other open;
	// unlinked is set once Unlink discarded it. Both are guarded by mu.
	// A posted open's id is in posted instead (see uploadIDLocked).
	upload   string
	unlinked bool
	// posted is the reply to the open when it was posted (posted.go);
	// nil when OpenFile waited for it.
	posted *postedOpen
	// inPlace is set for a file open for writing what others see: not
	// an atomic upload, nor this session's own upload joined. Its Write
	// and WriteAt send each write at once and return once the agent has
	// applied it, as write(2) into the page cache does: others see it
	// from then on, and a gateway that dies after answering loses
	// nothing it answered for. Writes from several goroutines are in
	// flight together, up to the window. (Its ReadFrom, an FTP
	// transfer's copy, still coalesces: FTP answers for the data only at
	// the transfer's end, after Close.)
	inPlace bool

	win *window // write acknowledgements; safe without mu

	// fetches counts the read-ahead blocks asked for (reader.go): a
	// read takes it before it waits for mu, to know which blocks were
	// asked for after it came.
	fetches atomic.Uint64

	mu       sync.Mutex
	offset   int64
	w        coalescer
	cache    blockCache
	closed   bool
	abortErr error
}

var _ afero.File = (*file)(nil)

// errStreamEnded stands for the stream's own error where a wait noticed
// that the stream ended (see muxConn.errClosed).
var errStreamEnded = errors.New("the session stream ended")

func openFlags(flag int) uint32 {
	var f agentpb.OpenFlag
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_WRONLY:
		f = agentpb.OpenFlag_OPEN_FLAG_WRITE
	case os.O_RDWR:
		f = agentpb.OpenFlag_OPEN_FLAG_READ | agentpb.OpenFlag_OPEN_FLAG_WRITE
	default:
		f = agentpb.OpenFlag_OPEN_FLAG_READ
	}
	for os, pb := range map[int]agentpb.OpenFlag{
		os.O_APPEND: agentpb.OpenFlag_OPEN_FLAG_APPEND, os.O_CREATE: agentpb.OpenFlag_OPEN_FLAG_CREATE,
		os.O_EXCL: agentpb.OpenFlag_OPEN_FLAG_EXCL, os.O_TRUNC: agentpb.OpenFlag_OPEN_FLAG_TRUNC,
		os.O_SYNC: agentpb.OpenFlag_OPEN_FLAG_SYNC,
	} {
		if flag&os != 0 {
			f |= pb
		}
	}
	return uint32(f)
}

// OpenFile implements afero.Fs. A directory opens as a handle that lists
// it; a file opens as a stream to the agent.
func (g *GRPCFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	return g.openFile(name, flag, perm, "", false)
}

// openFile opens name, or with join the data of that upload in progress
// (agentpb.OpenOp.join_upload).
func (g *GRPCFs) openFile(name string, flag int, perm os.FileMode, join string, held bool) (afero.File, error) {
	start := time.Now()
	gen := g.dirGen()
	c, err := g.mux.conn()
	if err == nil && g.postable(c, name, flag, join) {
		return g.openPosted(c, name, flag, perm, gen)
	}
	var resp *agentpb.SessionResponse
	if err == nil {
		resp, err = c.call(context.Background(), g.timeout, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
			Path: []byte(g.agentPath(name)), Flags: openFlags(flag), Perm: openWirePerm(perm), InPlace: g.opts.InPlace,
			JoinUpload: join, Held: held,
		}}})
	}
	g.observe("Open", resp, err, start)
	if err != nil {
		return nil, g.err("open", name, err)
	}
	if e := resp.GetError(); e != nil {
		g.openFailedIn(name)
		return nil, g.err("open", name, fromProto("open", userPath(name), e))
	}
	info := resp.GetInfo()
	if resp.GetUploadId() != "" {
		g.openedIn(name, gen) // an upload created there: the next may be posted
	}
	if fs.FileMode(info.GetMode()).IsDir() {
		return &dirFile{g: g, c: c, id: resp.GetId(), name: userPath(name), info: newFileInfo(info, path.Base(userPath(name)))}, nil
	}
	f := g.newFile(c, name, flag)
	f.id, f.sizeAt, f.upload = resp.GetId(), info.GetSize(), resp.GetUploadId()
	f.inPlace = f.writable() && f.upload == "" && join == ""
	if flag&os.O_APPEND != 0 {
		f.offset = info.GetSize()
	}
	return f, nil
}

// newFile is a file named name, opened with flag on c, its id and what
// the open's reply says still to be set.
func (g *GRPCFs) newFile(c *muxConn, name string, flag int) *file {
	f := &file{g: g, c: c, flag: flag, win: newWindow()}
	f.w = coalescer{pool: &g.buffers, emit: f.sendWrite}
	p := userPath(name)
	f.name.Store(&p)
	return f
}

// observe reports one operation to Options.Observe.
func (g *GRPCFs) observe(method string, resp *agentpb.SessionResponse, err error, start time.Time) {
	if g.opts.Observe == nil {
		return
	}
	code := status.Code(err)
	if err == nil && resp.GetError() != nil {
		code = codes.Code(resp.GetError().GetCode())
	}
	g.opts.Observe(method, code, time.Since(start))
}

// send sends one request on the file; cb runs with its reply (or the
// stream's error) exactly once, also when send fails, on the receive loop
// or the embedded agent's goroutine (see the lock order in mux.go), and
// must not block.
func (f *file) send(op string, req *agentpb.SessionRequest, cb func(*agentpb.SessionResponse, error)) error {
	req.File = f.id
	if _, err := f.c.send(req, cb); err != nil {
		return f.streamErr(op, err)
	}
	return nil
}

// streamErr names the file in the stream's error.
func (f *file) streamErr(op string, err error) error {
	if errors.Is(err, errStreamEnded) {
		return f.c.errClosed(op, f.path())
	}
	return f.g.err(op, f.path(), err)
}

// replyErr is the agent's error reply to a request on the file; for a
// posted open that failed, the open's error (the agent answers the file's
// requests EBADF, after the open's reply).
func (f *file) replyErr(op string, e *agentpb.Error) error {
	if err := f.openErr(); err != nil {
		return err
	}
	return f.g.err(op, f.path(), fromProto(op, f.path(), e))
}

// call sends a request on the file and waits for its reply, at most the
// call timeout; on a timeout the file is given up (timedOut). f.mu is held.
func (f *file) call(op string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	req.File = f.id
	resp, err := f.c.call(context.Background(), f.g.timeout, req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, f.timedOut(op) // later calls fail too
		}
		return nil, f.streamErr(op, err)
	}
	if e := resp.GetError(); e != nil {
		return nil, f.replyErr(op, e)
	}
	return resp, nil
}

// abandon asks the agent to abort the file without waiting: it stopped
// answering in time. Later calls fail.
func (f *file) abandon() {
	f.c.post(&agentpb.SessionRequest{File: f.id, Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{Abort: true}}})
}

// timedOut gives the file up after a wait of the call timeout.
func (f *file) timedOut(op string) error {
	f.abandon()
	if f.abortErr == nil {
		f.abortErr = fmt.Errorf("%w: no reply within %v", context.DeadlineExceeded, f.g.timeout)
	}
	return f.g.err(op, f.path(), f.abortErr)
}

// usable reports why the file cannot be used, if it cannot. f.mu is held.
func (f *file) usable(op string) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.path(), Err: os.ErrClosed}
	}
	if f.abortErr != nil {
		return &fs.PathError{Op: op, Path: f.path(), Err: f.abortErr}
	}
	return f.win.failed()
}

func (f *file) writable() bool { return f.flag&(os.O_WRONLY|os.O_RDWR) != 0 }

// path is the file's user-visible path.
func (f *file) path() string { return *f.name.Load() }

// Name implements afero.File.
func (f *file) Name() string { return f.path() }

// Pending implements Upload: the open started an atomic upload that has
// not been discarded. It stays pending while Close commits it: until then
// the upload is what its path means to its session.
func (f *file) Pending() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unlinked {
		return false
	}
	if po := f.posted; po != nil {
		if !po.answered() { // an upload, unless writes go in place
			return !f.g.opts.InPlace
		}
		return po.err == nil && po.upload != ""
	}
	return f.upload != ""
}

// uploadIDLocked is the agent's id of the upload the open started: for a
// posted open, once its reply came (awaitOpen). f.mu is held.
func (f *file) uploadIDLocked() string {
	if po := f.posted; po != nil {
		if !po.answered() {
			return ""
		}
		return po.upload
	}
	return f.upload
}

// notUpload is Upload's error for a file that is not an upload in
// progress. f.mu is held.
func (f *file) notUpload(op string) error {
	if err := f.usable(op); err != nil {
		return err
	}
	if f.uploadIDLocked() == "" || f.unlinked {
		return &fs.PathError{Op: op, Path: f.path(), Err: errors.ErrUnsupported}
	}
	return nil
}

// Unlink implements Upload (agentpb.UnlinkOp). Writes already sent land in
// the discarded data, as they would in an unlinked file.
func (f *file) Unlink() error {
	if err := f.awaitOpen("unlink"); err != nil {
		if f.openErr() != nil {
			return nil // the open failed: there is nothing to discard
		}
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.notUpload("unlink"); err != nil {
		return err
	}
	if _, err := f.call("unlink", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Unlink{Unlink: &agentpb.UnlinkOp{}}}); err != nil {
		return err
	}
	f.unlinked = true
	return nil
}

// Move implements Upload (agentpb.MoveOp).
func (f *file) Move(newname string) error {
	if err := f.awaitOpen("rename"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.notUpload("rename"); err != nil {
		return err
	}
	np := userPath(newname)
	_, err := f.call("rename", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Move{Move: &agentpb.MoveOp{Path: []byte(f.g.agentPath(np))}}})
	if err != nil {
		return linkError("rename", f.path(), np, err)
	}
	f.name.Store(&np)
	return nil
}

// Reopen implements Upload: a new file that joins the upload
// (agentpb.OpenOp.join_upload), once every write sent so far has landed.
func (f *file) Reopen(flag int) (afero.File, error) { return f.reopen(flag, false) }

// ReopenHeld implements HeldReopener: Reopen for a handle that held the
// path's file open already (agentpb.OpenOp.held).
func (f *file) ReopenHeld(flag int) (afero.File, error) { return f.reopen(flag, true) }

func (f *file) reopen(flag int, held bool) (afero.File, error) {
	if err := f.awaitOpen("open"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	err := f.notUpload("open")
	if err == nil {
		err = f.w.flush()
	}
	upload := f.uploadIDLocked()
	f.mu.Unlock()
	if err == nil {
		err = f.drain("write")
	}
	if err != nil {
		return nil, err
	}
	return f.g.openFile(f.path(), flag, 0, upload, held)
}

// IsDir reports that this handle is not a directory.
func (f *file) IsDir() bool { return false }

// WriteAt implements io.WriterAt. Concurrent calls at any offsets are safe.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	if f.flag&os.O_APPEND != 0 {
		f.mu.Unlock()
		return 0, &fs.PathError{Op: "writeat", Path: f.path(), Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	n, landed, err := f.writeAtLocked(p, off)
	f.mu.Unlock()
	return f.land(n, landed, err)
}

// land ends a Write or WriteAt that wrote n bytes or failed with err: for
// a file written in place (inPlace) it waits for l, the agent's answers
// to the write. A failure there fails the call: the bytes may or may not
// be in the file, as after a failed write(2). f.mu is not held.
func (f *file) land(n int, l *landing, err error) (int, error) {
	if err != nil || l == nil {
		return n, err
	}
	timer := time.NewTimer(f.g.timeout)
	defer timer.Stop()
	for range l.pieces {
		select {
		case e := <-l.answers:
			err = cmp.Or(err, e)
		case <-timer.C:
			f.mu.Lock()
			err = f.timedOut("write")
			f.mu.Unlock()
			return 0, err
		}
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// landing is where the agent's answers to a write sent at once (writeNow)
// come: one per message, pieces of them.
type landing struct {
	answers chan error
	pieces  int
}

// writeNow sends p, written at off, at once, after the writes held back:
// in messages of at most chunk bytes (the agent's limit on a message is
// a few of those), each in its own window slot. f.mu is held.
func (f *file) writeNow(p []byte, off int64) (*landing, error) {
	if err := f.w.flush(); err != nil {
		return nil, err
	}
	l := &landing{answers: make(chan error, (len(p)+chunk-1)/chunk)}
	for len(p) > 0 {
		piece := p[:min(len(p), chunk)]
		if err := f.sendWriteTo(off, piece, false, l.answers); err != nil {
			return nil, err
		}
		l.pieces++
		p, off = p[len(piece):], off+int64(len(piece))
	}
	return l, nil
}

// writeAtLocked writes p at off: held back to be coalesced, or for a file
// written in place sent at once, landed then yielding the agent's answer
// (see land). f.mu is held.
func (f *file) writeAtLocked(p []byte, off int64) (n int, landed *landing, err error) {
	if err := f.usable("write"); err != nil {
		return 0, nil, err
	}
	if !f.writable() {
		return 0, nil, &fs.PathError{Op: "write", Path: f.path(), Err: syscall.EBADF}
	}
	if off < 0 {
		return 0, nil, &fs.PathError{Op: "write", Path: f.path(), Err: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil, nil
	}
	f.cache.drop()
	if f.inPlace {
		if landed, err = f.writeNow(p, off); err != nil {
			return 0, nil, err
		}
		return len(p), landed, nil
	}
	if err := f.w.add(p, off); err != nil {
		return 0, nil, err
	}
	return len(p), nil, nil
}

// sendWrite sends one write message once a window slot is free; its
// acknowledgement frees the slot. It is the coalescer's emit: when lend is
// set and the stream takes data without copying it (lendingStream), data
// is lent to the agent and back in the pool once the agent has answered
// the write. f.mu is held.
func (f *file) sendWrite(off int64, data []byte, lend bool) (lent bool, err error) {
	lent = lend && f.c.lends()
	return lent, f.sendWriteTo(off, data, lent, nil)
}

// sendWriteTo is sendWrite, lent already decided, with the write's outcome
// also sent to landed when landed is not nil (writeNow). f.mu is held.
func (f *file) sendWriteTo(off int64, data []byte, lent bool, landed chan<- error) error {
	if err := f.acquire("write"); err != nil {
		return err
	}
	want := int64(len(data))
	req := &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Offset: off, Data: data}}}
	return f.sendAcked("write", req, lent, landed, func(r *agentpb.SessionResponse, err error) error {
		if lent && err == nil {
			// The agent has answered: it is done with data. Without
			// an answer (the stream ended) it may still be reading
			// it, and the buffer is left to the garbage collector.
			f.g.buffers.put(data)
		}
		if r.GetWrite().GetWritten() != want {
			return &fs.PathError{Op: "write", Path: f.path(), Err: io.ErrShortWrite}
		}
		return nil
	})
}

// acquire takes a slot of the acknowledgement window for one more request
// sent without waiting for its reply (sendAcked). f.mu is held.
func (f *file) acquire(op string) error {
	err := f.win.acquire(f.g.timeout, f.c.done)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return f.timedOut(op)
	}
	return f.streamErr(op, err)
}

// sendAcked sends req on the file, in a window slot taken by acquire,
// without waiting for its reply; the slot is freed when the reply comes. A
// failure, the stream's or the agent's, is kept in the window: a later
// call and Close return it. check, if non-nil, sees every reply first
// (as a reply callback, see send; with the stream's error if there is no
// reply) and returns the failure an answer that is no error still is (a
// short write). lend sends through the stream's SendLent. landed, if not
// nil, gets the outcome of the request (nil or its failure) once its reply
// has come; it must have room for it.
func (f *file) sendAcked(op string, req *agentpb.SessionRequest, lend bool, landed chan<- error, check func(*agentpb.SessionResponse, error) error) error {
	send := f.c.send
	if lend {
		send = f.c.sendLent
	}
	req.File = f.id
	_, err := send(req, func(r *agentpb.SessionResponse, err error) {
		defer f.win.release()
		var failed error
		if check != nil {
			failed = check(r, err)
		}
		switch {
		case err != nil:
			failed = f.streamErr(op, err)
		case r.GetError() != nil:
			failed = f.replyErr(op, r.GetError())
		}
		if failed != nil {
			f.win.fail(failed)
		}
		if landed != nil {
			landed <- failed
		}
	})
	if err != nil {
		err = f.streamErr(op, err)
		f.win.fail(err) // the callback has freed the slot
	}
	return err
}

// drain waits until every write sent has been acknowledged and returns the
// first failure. f.mu is not held.
func (f *file) drain(op string) error {
	err := f.win.drain(f.g.timeout, f.c.done)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.timedOut(op)
	case errors.Is(err, errStreamEnded):
		return f.streamErr(op, err)
	}
	return err
}

// Write implements io.Writer.
func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	start := f.offset
	n, landed, err := f.writeAtLocked(p, start)
	f.offset += int64(n)
	f.mu.Unlock()
	if n, err = f.land(n, landed, err); err != nil {
		f.mu.Lock()
		if f.offset == start+int64(len(p)) {
			f.offset = start + int64(n) // what was answered for: none
		}
		f.mu.Unlock()
	}
	return n, err
}

// ReadFrom implements io.ReaderFrom for io.Copy (an FTP upload): it reads
// from r straight into chunk-sized message buffers, so the data is copied
// once less than through Write and read in as few calls as the socket
// allows. It writes at the file offset like Write.
func (f *file) ReadFrom(r io.Reader) (int64, error) {
	f.mu.Lock()
	err := f.usable("write")
	if err == nil && !f.writable() {
		err = &fs.PathError{Op: "write", Path: f.path(), Err: syscall.EBADF}
	}
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var total int64
	buf := f.g.buffers.get()
	defer func() { f.g.buffers.put(buf) }()
	for {
		// The read happens without f.mu: a slow client must not block
		// TransferError or Stat on this file.
		n, rerr := r.Read(buf[len(buf):chunk])
		buf = buf[:len(buf)+n]
		total += int64(n)
		if len(buf) == chunk || rerr != nil && len(buf) > 0 {
			f.mu.Lock()
			err := f.usable("write")
			if err == nil {
				// The coalescer owns buf from here and returns it to the
				// pool.
				f.cache.drop()
				off := f.offset
				f.offset += int64(len(buf))
				if errors.Is(rerr, io.EOF) && len(buf) < chunk {
					// The upload's last part: held back, so that the
					// close can carry it (Close).
					err = f.w.holdOwned(buf, off)
				} else {
					err = f.w.sendOwned(buf, off)
				}
				buf = f.g.buffers.get()
			}
			f.mu.Unlock()
			if err != nil {
				return total, err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

// ReadFrom copies r into dst with dst's io.ReaderFrom when it has one (the
// gRPC file does), else through Write. A wrapper that passes writes through
// forwards ReadFrom with it, after wrapping r in whatever it does per write.
func ReadFrom(dst io.Writer, r io.Reader) (int64, error) {
	if rf, ok := dst.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{dst}, r)
}

// WriteString implements afero.File.
func (f *file) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

// Seek implements io.Seeker.
func (f *file) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.path(), Err: os.ErrClosed}
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.offset
	case io.SeekEnd:
		fi, err := f.statLocked()
		if err != nil {
			return 0, err
		}
		base = fi.Size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.path(), Err: syscall.EINVAL}
	}
	if base+offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.path(), Err: syscall.EINVAL}
	}
	f.offset = base + offset
	return f.offset, nil
}

func (f *file) statLocked() (os.FileInfo, error) {
	if err := f.w.flush(); err != nil {
		return nil, err
	}
	resp, err := f.call("stat", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fstat{Fstat: &agentpb.StatOp{}}})
	if err != nil {
		return nil, err
	}
	// A request sent before without waiting that failed (its reply came
	// first): the state is not what the client set.
	if werr := f.win.failed(); werr != nil {
		return nil, werr
	}
	return newFileInfo(resp.GetInfo(), path.Base(f.path())), nil
}

// Stat implements afero.File: the open file's state, an upload's included.
func (f *file) Stat() (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("stat"); err != nil {
		return nil, err
	}
	return f.statLocked()
}

// Flush implements Flusher: every write so far has been applied by the
// agent (not fsynced) when it returns.
func (f *file) Flush() error {
	f.mu.Lock()
	if f.closed || !f.writable() {
		f.mu.Unlock()
		return nil
	}
	err := f.usable("write")
	if err == nil {
		err = f.w.flush()
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.drain("write")
}

// Sync implements afero.File: every write so far is on the agent's disk.
// The sync follows the writes on the stream, so it need not wait for
// their replies; a failed one is the more precise error.
func (f *file) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("sync"); err != nil {
		return err
	}
	if err := f.w.flush(); err != nil {
		return err
	}
	_, err := f.call("sync", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Sync{Sync: &agentpb.SyncOp{}}})
	if werr := f.win.failed(); werr != nil {
		return werr
	}
	return err
}

// Truncate implements afero.File.
func (f *file) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("truncate"); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.path(), Err: syscall.EINVAL}
	}
	if err := f.w.flush(); err != nil {
		return err
	}
	f.cache.drop()
	return f.setattr("truncate", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Truncate{Truncate: &agentpb.TruncateOp{Size: size}}})
}

// SetTimes implements TimesSetter: it sets the file's times after the
// writes made before it (those held back go first), and a later write
// moves the mtime, as on a local file. An agent older than
// SetTimesOp.until_write sets them again when the file is closed.
func (f *file) SetTimes(atime, mtime time.Time) error {
	if err := checkTimes("chtimes", f.path(), atime, mtime); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("chtimes"); err != nil {
		return err
	}
	if err := refuseEpoch(f.c.features, "chtimes", f.path(), atime, mtime); err != nil {
		return err
	}
	// The writes held back go first: the times are set after them.
	if err := f.w.flush(); err != nil {
		return err
	}
	// A block read ahead before the times were set would answer a later
	// read without the read(2) that moves the atime set here (relatime
	// moves an atime that is not after the mtime): the reads go to the
	// agent again, as sftp-server's preads do.
	f.cache.drop()
	return f.setattr("chtimes", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{
		AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime), UntilWrite: true}}})
}

// Chmod changes the open file's mode (an upload's included).
func (f *file) Chmod(mode os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("chmod"); err != nil {
		return err
	}
	// A mode is always waited for: a filesystem that refuses chmod (vfat,
	// some FUSE and network mounts) refuses it for every upload, and the
	// client is told so while the data still lands.
	_, err := f.call("chmod", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: wireMode(mode)}}})
	return err
}

// setattr sends a truncate or times request on the file. On an atomic
// upload still to be committed, with an agent that aborts the close after a
// failed posted request (FILE_FEATURE_POSTED_FAILURE_ABORTS), it does not
// wait for the reply: the request goes out in order behind the writes, in
// their acknowledgement window, and a failure is returned by a later call
// and by Close, which then does not commit, as for a failed write. An
// FSETSTAT of size and times before the close (lftp's mirror, OpenSSH's
// put -p, sshfs's utimens on an open file) then costs no round trip. On
// the agent's own temp file these fail as a write there would: a size
// beyond what the filesystem holds (EFBIG) or an I/O error, and the upload
// is then lost as it would be to the write. Anything else waits for its
// reply: on a file written in place, or an upload already discarded, a
// failure is an answer the client may act on. f.mu is held.
func (f *file) setattr(op string, req *agentpb.SessionRequest) error {
	if f.uploadIDLocked() == "" || f.unlinked || f.c.features&uint32(agentpb.FileFeature_FILE_FEATURE_POSTED_FAILURE_ABORTS) == 0 {
		_, err := f.call(op, req)
		return err
	}
	if err := f.acquire(op); err != nil {
		return err
	}
	req.Posted = true
	return f.sendAcked(op, req, false, nil, nil)
}

// TransferError marks the transfer failed: Close then discards an upload
// instead of committing it. ftpserverlib and pkg/sftp call it when a
// transfer is aborted or its connection drops.
func (f *file) TransferError(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.abortErr == nil {
		f.abortErr = err
	}
	f.w.drop()
}

// Close implements io.Closer. For an upload it returns only once the agent
// has committed it, and returns the agent's error if it did not: the data
// is in place exactly when Close returns nil. A file opened for reading
// closes without waiting.
func (f *file) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return &fs.PathError{Op: "close", Path: f.path(), Err: os.ErrClosed}
	}
	f.closed = true
	f.cache.drop()
	if !f.writable() {
		f.mu.Unlock()
		f.abandon() // nothing to commit: the agent just closes it
		return nil
	}
	cop := &agentpb.CloseOp{}
	err := f.abortErr
	if err != nil {
		err = &fs.PathError{Op: "close", Path: f.path(), Err: fmt.Errorf("transfer aborted: %w", err)}
	} else {
		// The last held-back write rides with the close where the agent
		// takes it (a small save's data and commit are then one message
		// each way); anything else is sent before it.
		if f.c.features&uint32(agentpb.FileFeature_FILE_FEATURE_CLOSE_WITH_WRITE) != 0 {
			if off, data, ok := f.w.takeOnly(); ok {
				cop.Write = &agentpb.WriteOp{Offset: off, Data: data}
				defer f.g.buffers.put(data) // once sent: the call returns after
			}
		}
		if err = f.w.flush(); err == nil {
			err = f.win.failed() // a write failed already: abort, do not commit
		}
	}
	f.mu.Unlock()
	if err != nil {
		f.abandon()
		return err
	}
	// The close goes out right behind the writes, without waiting for
	// their acknowledgements: the agent serves a file's requests in order
	// and refuses to commit after a failed write, so committing costs one
	// round trip. The writes' replies precede the close's (the receive
	// loop runs their callbacks first); a failed one is the more precise
	// error.
	start := time.Now()
	req := &agentpb.SessionRequest{File: f.id, Op: &agentpb.SessionRequest_Close{Close: cop}}
	resp, err := f.c.call(context.Background(), f.g.timeout, req)
	if f.openErr() == nil { // a failed posted open was observed as the open
		f.g.observe("Close", resp, err, start)
	}
	if werr := f.win.failed(); werr != nil {
		return werr
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			f.abandon()
		}
		return f.streamErr("close", err)
	}
	if e := resp.GetError(); e != nil {
		return f.replyErr("close", e)
	}
	return nil
}

// Readdir implements afero.File; a regular file has no entries.
func (f *file) Readdir(int) ([]os.FileInfo, error) {
	return nil, &fs.PathError{Op: "readdir", Path: f.path(), Err: syscall.ENOTDIR}
}

// Readdirnames implements afero.File.
func (f *file) Readdirnames(int) ([]string, error) {
	return nil, &fs.PathError{Op: "readdir", Path: f.path(), Err: syscall.ENOTDIR}
}

var (
	_ TimesSetter     = (*file)(nil)
	_ ModeSetter      = (*file)(nil)
	_ TransferAborter = (*file)(nil)
	_ Upload          = (*file)(nil)
	_ Flusher         = (*file)(nil)
)
