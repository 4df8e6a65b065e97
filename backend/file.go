package backend

import (
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

	"github.com/upgate/upgate/backend/agentpb"
)

const (
	// chunk is the size of the data of one write message once coalesced
	// and of one read-ahead block: just under 1 MiB, so that a whole
	// message (data plus a few bytes of framing) fits grpc-go's pooled
	// 1 MiB buffers on both ends instead of a fresh, zeroed allocation.
	chunk = 1<<20 - 64
	// minMessage is the size below which a write is held back to be
	// coalesced with the writes that follow it.
	minMessage = 256 << 10
	// maxExtents and maxBuffered bound the writes held back per file.
	maxExtents  = 16
	maxBuffered = 8 << 20
	// writeWindow is how many write messages may await their
	// acknowledgement.
	writeWindow = 16
	// readAhead is how many blocks past the one being read are fetched.
	readAhead = 2
	// maxBlocks bounds the read cache of one file.
	maxBlocks = 8
)

// file is an open file on an agent: one Open stream. Requests are pipelined:
// writes are coalesced into extents of up to chunk bytes and acknowledged
// asynchronously (the first failure is returned by a later call and by
// Close); reads are served from a cache of chunk-sized blocks that is filled
// ahead of the reader. Close commits; TransferError followed by Close, the
// fs's context ending, or a timeout aborts.
type file struct {
	g *GRPCFs
	// name is the user-visible, clean path; Move changes it (see path).
	name   atomic.Pointer[string]
	flag   int
	sizeAt int64 // size when opened: bounds read-ahead
	// upload is the agent's id of the atomic upload this open started
	// (agentpb.FileResponse.upload_id), "" for any other open; unlinked
	// is set once Unlink discarded it. Both are guarded by mu.
	upload   string
	unlinked bool
	// pipelineClose: the agent aborts a close that follows a failed write
	// (FILE_FEATURE_CLOSE_AFTER_FAILED_WRITE_ABORTS), so Close need not
	// wait for the writes' replies before sending it.
	pipelineClose bool
	stream        agentpb.Agent_OpenClient
	cancel        context.CancelFunc
	timeout       time.Duration

	// sendMu serializes Send and id allocation.
	sendMu sync.Mutex
	nextID uint64

	// pmu guards pending and recvErr; the receive loop fills them.
	pmu      sync.Mutex
	pending  map[uint64]func(*agentpb.FileResponse, error)
	recvErr  error
	recvDone chan struct{}

	// writeSlots holds one token per unacknowledged write.
	writeSlots chan struct{}
	// werrMu guards werr, the first write failure.
	werrMu sync.Mutex
	werr   error

	// mu guards everything below; it is never held while waiting for a
	// reply, only while sending.
	mu       sync.Mutex
	offset   int64
	extents  []*extent
	buffered int
	extCap   int // capacity of the next new extent: grows with the writes, up to chunk
	closed   bool
	abortErr error
	blocks   map[int64]*block
	lastUse  map[int64]uint64
	useClock uint64
}

var _ afero.File = (*file)(nil)

// extent is a run of written bytes not yet sent.
type extent struct {
	off  int64
	data []byte
}

// block is one read-ahead block; done closes when data, eof and err are set.
type block struct {
	done chan struct{}
	data []byte
	eof  bool
	err  error
}

type reply struct {
	resp *agentpb.FileResponse
	err  error
}

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
	return g.openFile(name, flag, perm, "")
}

// openFile opens name, or with join the data of that upload in progress
// (agentpb.OpenOp.join_upload).
func (g *GRPCFs) openFile(name string, flag int, perm os.FileMode, join string) (afero.File, error) {
	ctx, cancel := context.WithCancel(g.ctx)
	// Bound the stream's setup: NewStream waits while the agent connects.
	setup := time.AfterFunc(g.timeout, cancel)
	stream, err := g.client.Open(ctx)
	if err != nil {
		setup.Stop()
		cancel()
		return nil, g.err("open", name, err)
	}
	f := &file{
		g: g, flag: flag, stream: stream, cancel: cancel, timeout: g.timeout,
		pending:    make(map[uint64]func(*agentpb.FileResponse, error)),
		recvDone:   make(chan struct{}),
		writeSlots: make(chan struct{}, writeWindow),
		blocks:     make(map[int64]*block),
		lastUse:    make(map[int64]uint64),
	}
	p := userPath(name)
	f.name.Store(&p)
	go f.recvLoop()
	resp, err := f.call("open", &agentpb.FileRequest{Op: &agentpb.FileRequest_Open{Open: &agentpb.OpenOp{
		Path: []byte(g.agentPath(name)), Flags: openFlags(flag), Perm: uint32(perm.Perm()), InPlace: g.opts.InPlace,
		JoinUpload: join,
	}}})
	setup.Stop()
	if err != nil {
		f.finish()
		return nil, err
	}
	info := resp.GetOpened()
	f.sizeAt = info.GetSize()
	f.upload = resp.GetUploadId()
	f.pipelineClose = resp.GetFeatures()&uint32(agentpb.FileFeature_FILE_FEATURE_CLOSE_AFTER_FAILED_WRITE_ABORTS) != 0
	if fs.FileMode(info.GetMode()).IsDir() {
		_, _ = f.call("close", &agentpb.FileRequest{Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{}}})
		f.finish()
		return &dirFile{g: g, name: f.path(), info: newFileInfo(info, path.Base(f.path()))}, nil
	}
	if flag&os.O_APPEND != 0 {
		f.offset = info.GetSize()
	}
	return f, nil
}

// recvLoop dispatches replies to their callbacks until the stream ends, then
// fails every request still waiting.
func (f *file) recvLoop() {
	defer close(f.recvDone)
	for {
		resp, err := f.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = &fs.PathError{Op: "read", Path: f.path(), Err: os.ErrClosed}
			} else {
				err = f.g.err("io", f.path(), err)
			}
			f.pmu.Lock()
			f.recvErr = err
			pending := f.pending
			f.pending = nil
			f.pmu.Unlock()
			for _, cb := range pending {
				cb(nil, err)
			}
			return
		}
		f.pmu.Lock()
		cb := f.pending[resp.GetId()]
		delete(f.pending, resp.GetId())
		f.pmu.Unlock()
		if cb != nil {
			cb(resp, nil)
		}
	}
}

// send sends one request; cb runs on the receive loop with its reply (or
// the stream's error) exactly once, also when send fails, and must not
// block.
func (f *file) send(op string, req *agentpb.FileRequest, cb func(*agentpb.FileResponse, error)) error {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	f.nextID++
	id := f.nextID
	f.pmu.Lock()
	if f.recvErr != nil {
		err := f.recvErr
		f.pmu.Unlock()
		return err
	}
	f.pending[id] = cb
	f.pmu.Unlock()
	if err := f.stream.Send(withID(req, id)); err != nil {
		// Send reports io.EOF when the stream broke; Recv has the cause.
		// The receive loop, once ended, has run cb (it was pending before
		// the loop could take the map), so cb runs exactly once whatever
		// the error: callers must not undo what cb does.
		f.cancel()
		<-f.recvDone
		f.pmu.Lock()
		defer f.pmu.Unlock()
		if f.recvErr != nil {
			return f.recvErr
		}
		return f.g.err(op, f.path(), err)
	}
	return nil
}

// call sends a request and waits for its reply, at most the call timeout.
func (f *file) call(op string, req *agentpb.FileRequest) (*agentpb.FileResponse, error) {
	ch := make(chan reply, 1)
	if err := f.send(op, req, func(r *agentpb.FileResponse, err error) { ch <- reply{r, err} }); err != nil {
		return nil, err
	}
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.resp.GetError() != nil {
			return nil, fromProto(op, f.path(), r.resp.GetError())
		}
		return r.resp, nil
	case <-timer.C:
		f.cancel() // the agent aborts the stream's upload
		return nil, f.g.err(op, f.path(), fmt.Errorf("%w: no reply within %v", context.DeadlineExceeded, f.timeout))
	}
}

// usable reports why the file cannot be used, if it cannot. f.mu is held.
func (f *file) usable(op string) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.path(), Err: os.ErrClosed}
	}
	if f.abortErr != nil {
		return &fs.PathError{Op: op, Path: f.path(), Err: f.abortErr}
	}
	return f.writeErr()
}

func (f *file) writeErr() error {
	f.werrMu.Lock()
	defer f.werrMu.Unlock()
	return f.werr
}

func (f *file) setWriteErr(err error) {
	f.werrMu.Lock()
	defer f.werrMu.Unlock()
	if f.werr == nil {
		f.werr = err
	}
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
	return f.upload != "" && !f.unlinked
}

// notUpload is Upload's error for a file that is not an upload in
// progress. f.mu is held.
func (f *file) notUpload(op string) error {
	if err := f.usable(op); err != nil {
		return err
	}
	if f.upload == "" || f.unlinked {
		return &fs.PathError{Op: op, Path: f.path(), Err: errors.ErrUnsupported}
	}
	return nil
}

// Unlink implements Upload (agentpb.UnlinkOp). Writes already sent land in
// the discarded data, as they would in an unlinked file.
func (f *file) Unlink() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.notUpload("unlink"); err != nil {
		return err
	}
	if _, err := f.call("unlink", &agentpb.FileRequest{Op: &agentpb.FileRequest_Unlink{Unlink: &agentpb.UnlinkOp{}}}); err != nil {
		return err
	}
	f.unlinked = true
	return nil
}

// Move implements Upload (agentpb.MoveOp).
func (f *file) Move(newname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.notUpload("rename"); err != nil {
		return err
	}
	np := userPath(newname)
	_, err := f.call("rename", &agentpb.FileRequest{Op: &agentpb.FileRequest_Move{Move: &agentpb.MoveOp{Path: []byte(f.g.agentPath(np))}}})
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return &os.LinkError{Op: "rename", Old: f.path(), New: np, Err: pe.Err}
		}
		return err
	}
	f.name.Store(&np)
	return nil
}

// Reopen implements Upload: a new stream that joins the upload
// (agentpb.OpenOp.join_upload), once every write sent so far has landed.
func (f *file) Reopen(flag int) (afero.File, error) {
	f.mu.Lock()
	err := f.notUpload("open")
	if err == nil {
		err = f.flushLocked()
	}
	upload := f.upload
	f.mu.Unlock()
	if err == nil {
		err = f.waitWrites()
	}
	if err != nil {
		return nil, err
	}
	return f.g.openFile(f.path(), flag, 0, upload)
}

// IsDir reports that this handle is not a directory.
func (f *file) IsDir() bool { return false }

// WriteAt implements io.WriterAt. Concurrent calls at any offsets are safe.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.path(), Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	return f.writeAtLocked(p, off)
}

func (f *file) writeAtLocked(p []byte, off int64) (int, error) {
	if err := f.usable("write"); err != nil {
		return 0, err
	}
	if !f.writable() {
		return 0, &fs.PathError{Op: "write", Path: f.path(), Err: syscall.EBADF}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "write", Path: f.path(), Err: syscall.EINVAL}
	}
	if len(p) == 0 {
		return 0, nil
	}
	f.dropCache()
	if err := f.addExtent(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// addExtent holds p back for coalescing and sends what is ready. An extent
// that continues another is filled up to exactly chunk bytes, sent, and the
// rest of p starts the next one, so sequential writes of any size become
// chunk-sized messages without reallocating. f.mu is held.
func (f *file) addExtent(p []byte, off int64) error {
	end := off + int64(len(p))
	var cur *extent
	for _, e := range f.extents {
		eEnd := e.off + int64(len(e.data))
		if eEnd == off && len(e.data) < chunk {
			cur = e
			break
		}
		if off < eEnd && e.off < end {
			// Overwrites bytes not yet sent: keep the order by sending
			// everything held back first.
			if err := f.flushLocked(); err != nil {
				return err
			}
			break
		}
	}
	for len(p) > 0 {
		if cur == nil {
			cur = &extent{off: off, data: f.newBuffer(len(p))}
			f.extents = append(f.extents, cur)
		}
		n := min(len(p), chunk-len(cur.data))
		cur.data = append(f.grow(cur.data, n), p[:n]...)
		f.buffered += n
		p, off = p[n:], off+int64(n)
		if len(cur.data) == chunk {
			if err := f.sendExtent(cur); err != nil {
				return err
			}
			cur = nil
		}
	}
	if cur != nil {
		// Join the extent that starts where this one now ends (writes
		// that arrived out of order); sendExtent splits it.
		for i, e := range f.extents {
			if e != cur && e.off == end {
				cur.data = append(cur.data, e.data...)
				f.extents = append(f.extents[:i], f.extents[i+1:]...)
				f.g.putBuffer(e.data)
				break
			}
		}
		if len(cur.data) >= chunk {
			if err := f.sendExtent(cur); err != nil {
				return err
			}
		}
	}
	for len(f.extents) > maxExtents || f.buffered > maxBuffered {
		if err := f.sendExtent(f.extents[0]); err != nil {
			return err
		}
	}
	return nil
}

// newBuffer is an empty buffer for an extent whose first write has n
// bytes: small at first (a small file costs about its size), a pooled
// chunk once the file's writes have filled one.
func (f *file) newBuffer(n int) []byte {
	if f.extCap >= chunk || n >= chunk {
		return f.g.getBuffer()
	}
	return make([]byte, 0, max(n, f.extCap))
}

// grow makes room for n more bytes in b, doubling its capacity up to
// chunk, where it takes a pooled buffer. f.mu is held.
func (f *file) grow(b []byte, n int) []byte {
	if len(b)+n <= cap(b) {
		return b
	}
	c := max(len(b)+n, min(2*cap(b), chunk))
	f.extCap = max(f.extCap, min(c, chunk))
	var nb []byte
	if c == chunk {
		nb = f.g.getBuffer()[:len(b)]
	} else {
		nb = make([]byte, len(b), c)
	}
	copy(nb, b)
	f.g.putBuffer(b)
	return nb
}

// sendExtent sends e in messages of at most chunk bytes, forgets it and
// returns its buffer to the pool (Send has copied the data into the
// message by the time it returns). f.mu is held.
func (f *file) sendExtent(e *extent) error {
	for i, x := range f.extents {
		if x == e {
			f.extents = append(f.extents[:i], f.extents[i+1:]...)
			break
		}
	}
	f.buffered -= len(e.data)
	defer f.g.putBuffer(e.data)
	for data, off := e.data, e.off; len(data) > 0; {
		n := min(len(data), chunk)
		if err := f.sendWrite(off, data[:n]); err != nil {
			return err
		}
		data, off = data[n:], off+int64(n)
	}
	return nil
}

// flushLocked sends every held-back write. f.mu is held.
func (f *file) flushLocked() error {
	for len(f.extents) > 0 {
		if err := f.sendExtent(f.extents[0]); err != nil {
			return err
		}
	}
	return nil
}

// sendWrite sends one write once a window slot is free; its
// acknowledgement frees the slot.
func (f *file) sendWrite(off int64, data []byte) error {
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	select {
	case f.writeSlots <- struct{}{}:
	case <-f.recvDone:
		f.pmu.Lock()
		defer f.pmu.Unlock()
		return f.recvErr
	case <-timer.C:
		f.cancel()
		return f.g.err("write", f.path(), fmt.Errorf("%w: writes not acknowledged within %v", context.DeadlineExceeded, f.timeout))
	}
	want := int64(len(data))
	err := f.send("write", &agentpb.FileRequest{Op: &agentpb.FileRequest_Write{Write: &agentpb.WriteOp{Offset: off, Data: data}}}, func(r *agentpb.FileResponse, err error) {
		<-f.writeSlots
		switch {
		case err != nil:
			f.setWriteErr(err)
		case r.GetError() != nil:
			f.setWriteErr(fromProto("write", f.path(), r.GetError()))
		case r.GetWrite().GetWritten() != want:
			f.setWriteErr(&fs.PathError{Op: "write", Path: f.path(), Err: io.ErrShortWrite})
		}
	})
	if err != nil {
		f.setWriteErr(err) // the callback has freed the slot
	}
	return err
}

// waitWrites waits until every write sent has been acknowledged and returns
// the first failure.
func (f *file) waitWrites() error {
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	for i := 0; i < writeWindow; i++ {
		select {
		case f.writeSlots <- struct{}{}:
		case <-f.recvDone:
			for ; i > 0; i-- {
				<-f.writeSlots
			}
			if err := f.writeErr(); err != nil {
				return err
			}
			f.pmu.Lock()
			defer f.pmu.Unlock()
			return f.recvErr
		case <-timer.C:
			for ; i > 0; i-- {
				<-f.writeSlots
			}
			f.cancel()
			return f.g.err("write", f.path(), fmt.Errorf("%w: writes not acknowledged within %v", context.DeadlineExceeded, f.timeout))
		}
	}
	for i := 0; i < writeWindow; i++ {
		<-f.writeSlots
	}
	return f.writeErr()
}

// Write implements io.Writer.
func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.writeAtLocked(p, f.offset)
	f.offset += int64(n)
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
	if err == nil {
		// Held-back writes go first, to keep the order.
		f.dropCache()
		err = f.flushLocked()
	}
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var total int64
	buf := f.g.getBuffer()
	defer func() { f.g.putBuffer(buf) }()
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
				// The extent owns buf from here; sendExtent returns it to
				// the pool.
				f.dropCache()
				e := &extent{off: f.offset, data: buf}
				f.extents = append(f.extents, e)
				f.buffered += len(buf)
				f.offset += int64(len(buf))
				err = f.sendExtent(e)
				buf = f.g.getBuffer()
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

// dropCache forgets read-ahead blocks after a write. f.mu is held.
func (f *file) dropCache() {
	if len(f.blocks) > 0 {
		clear(f.blocks)
		clear(f.lastUse)
	}
}

// getBlock returns block idx, fetching it (and the blocks after it) if it
// is not cached. f.mu is held.
func (f *file) getBlock(idx int64) (*block, error) {
	b := f.blocks[idx]
	if b == nil {
		var err error
		if b, err = f.fetch(idx); err != nil {
			return nil, err
		}
	}
	f.useClock++
	f.lastUse[idx] = f.useClock
	for k := idx + 1; k <= idx+readAhead && k*chunk < f.sizeAt; k++ {
		if f.blocks[k] == nil {
			if _, err := f.fetch(k); err != nil {
				break // the reader will see the error on its own fetch
			}
		}
	}
	for len(f.blocks) > maxBlocks {
		victim, oldest := int64(-1), ^uint64(0)
		for k := range f.blocks {
			if k != idx && f.lastUse[k] < oldest {
				victim, oldest = k, f.lastUse[k]
			}
		}
		delete(f.blocks, victim)
		delete(f.lastUse, victim)
	}
	return b, nil
}

// fetch asks the agent for block idx. f.mu is held.
func (f *file) fetch(idx int64) (*block, error) {
	b := &block{done: make(chan struct{})}
	err := f.send("read", &agentpb.FileRequest{Op: &agentpb.FileRequest_Read{Read: &agentpb.ReadOp{Offset: idx * chunk, Length: chunk}}}, func(r *agentpb.FileResponse, err error) {
		switch {
		case err != nil:
			b.err = err
		case r.GetError() != nil:
			b.err = fromProto("read", f.path(), r.GetError())
		default:
			b.data, b.eof = r.GetRead().GetData(), r.GetRead().GetEof()
		}
		close(b.done)
	})
	if err != nil {
		return nil, err
	}
	f.blocks[idx] = b
	f.useClock++
	f.lastUse[idx] = f.useClock
	return b, nil
}

// readAtLocked reads through the block cache. f.mu is held on entry and on
// return; it is released while waiting for the agent.
func (f *file) readAtLocked(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.path(), Err: os.ErrClosed}
	}
	if f.flag&(os.O_WRONLY|os.O_RDWR) == os.O_WRONLY {
		return 0, &fs.PathError{Op: "read", Path: f.path(), Err: syscall.EBADF}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path(), Err: syscall.EINVAL}
	}
	// Writes held back go first, so the read sees them.
	if err := f.flushLocked(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		idx := pos / chunk
		b, err := f.getBlock(idx)
		if err != nil {
			return n, err
		}
		f.mu.Unlock()
		timer := time.NewTimer(f.timeout)
		select {
		case <-b.done:
		case <-timer.C:
			f.cancel()
		}
		timer.Stop()
		f.mu.Lock()
		select {
		case <-b.done:
		default:
			return n, f.g.err("read", f.path(), fmt.Errorf("%w: no reply within %v", context.DeadlineExceeded, f.timeout))
		}
		if b.err != nil {
			if f.blocks[idx] == b {
				delete(f.blocks, idx)
			}
			return n, b.err
		}
		within := int(pos - idx*chunk)
		if within >= len(b.data) {
			if b.eof || len(b.data) < chunk {
				return n, io.EOF
			}
		}
		n += copy(p[n:], b.data[within:])
		if n < len(p) && b.eof && idx*chunk+int64(len(b.data)) <= off+int64(n) {
			return n, io.EOF
		}
	}
	return n, nil
}

// ReadAt implements io.ReaderAt. Concurrent calls are safe.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readAtLocked(p, off)
}

// Read implements io.Reader.
func (f *file) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.readAtLocked(p, f.offset)
	f.offset += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

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
	if err := f.flushLocked(); err != nil {
		return nil, err
	}
	resp, err := f.call("stat", &agentpb.FileRequest{Op: &agentpb.FileRequest_Stat{Stat: &agentpb.StatOp{}}})
	if err != nil {
		return nil, err
	}
	return newFileInfo(resp.GetStat(), path.Base(f.path())), nil
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
		err = f.flushLocked()
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.waitWrites()
}

// Sync implements afero.File: every write so far is on the agent's disk.
func (f *file) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("sync"); err != nil {
		return err
	}
	if err := f.flushLocked(); err != nil {
		return err
	}
	if err := f.waitWrites(); err != nil {
		return err
	}
	_, err := f.call("sync", &agentpb.FileRequest{Op: &agentpb.FileRequest_Sync{Sync: &agentpb.SyncOp{}}})
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
	if err := f.flushLocked(); err != nil {
		return err
	}
	f.dropCache()
	_, err := f.call("truncate", &agentpb.FileRequest{Op: &agentpb.FileRequest_Truncate{Truncate: &agentpb.TruncateOp{Size: size}}})
	return err
}

// SetTimes sets the file's times now and again when it is closed (after an
// upload commits), as SFTP's FSETSTAT and lftp's MFMT before the 226 need:
// writes still in flight would otherwise leave a later mtime.
func (f *file) SetTimes(atime, mtime time.Time) error {
	if err := checkTimes("chtimes", f.path(), atime, mtime); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("chtimes"); err != nil {
		return err
	}
	// The writes held back go first: the times are set after them.
	if err := f.flushLocked(); err != nil {
		return err
	}
	_, err := f.call("chtimes", &agentpb.FileRequest{Op: &agentpb.FileRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime)}}})
	return err
}

// Chmod changes the open file's mode (an upload's included).
func (f *file) Chmod(mode os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.usable("chmod"); err != nil {
		return err
	}
	_, err := f.call("chmod", &agentpb.FileRequest{Op: &agentpb.FileRequest_Chmod{Chmod: &agentpb.ChmodOp{Perm: uint32(mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))}}})
	return err
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
	f.extents, f.buffered = nil, 0
}

// Close implements io.Closer. For an upload it returns only once the agent
// has committed it, and returns the agent's error if it did not: the data
// is in place exactly when Close returns nil.
func (f *file) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return &fs.PathError{Op: "close", Path: f.path(), Err: os.ErrClosed}
	}
	f.closed = true
	err := f.abortErr
	if err != nil {
		err = &fs.PathError{Op: "close", Path: f.path(), Err: fmt.Errorf("transfer aborted: %w", err)}
	} else {
		err = f.flushLocked()
	}
	f.mu.Unlock()
	defer f.finish()
	if err == nil && !f.pipelineClose {
		err = f.waitWrites() // an older agent would commit after a failed write
	}
	if err == nil {
		err = f.writeErr() // a write failed already: abort, do not commit
	}
	if err != nil {
		_, _ = f.call("close", &agentpb.FileRequest{Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{Abort: true}}})
		return err
	}
	// The close goes out right behind the writes, without waiting for
	// their acknowledgements (pipelineClose): the agent serves a stream's
	// requests in order and refuses to commit after a failed write, so
	// committing costs one round trip. The writes' replies precede the close's (the receive
	// loop runs their callbacks first); a failed one is the more precise
	// error.
	_, err = f.call("close", &agentpb.FileRequest{Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{}}})
	if werr := f.writeErr(); werr != nil {
		return werr
	}
	return err
}

// finish ends the stream and waits for the receive loop.
func (f *file) finish() {
	f.sendMu.Lock()
	_ = f.stream.CloseSend()
	f.sendMu.Unlock()
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	select {
	case <-f.recvDone:
	case <-timer.C:
	}
	f.cancel()
	<-f.recvDone
}

// Readdir implements afero.File; a regular file has no entries.
func (f *file) Readdir(int) ([]os.FileInfo, error) {
	return nil, &fs.PathError{Op: "readdir", Path: f.path(), Err: syscall.ENOTDIR}
}

// Readdirnames implements afero.File.
func (f *file) Readdirnames(int) ([]string, error) {
	return nil, &fs.PathError{Op: "readdir", Path: f.path(), Err: syscall.ENOTDIR}
}

func withID(req *agentpb.FileRequest, id uint64) *agentpb.FileRequest {
	req.Id = id
	return req
}

var (
	_ TimesSetter     = (*file)(nil)
	_ ModeSetter      = (*file)(nil)
	_ TransferAborter = (*file)(nil)
	_ Upload          = (*file)(nil)
	_ Flusher         = (*file)(nil)
)
