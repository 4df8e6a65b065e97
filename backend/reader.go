package backend

import (
	"cmp"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// This file holds an open file's read path: a cache of chunk-sized blocks
// that is filled ahead of the reader.
//
// A block holds what the file held when the block was asked for. A read
// that arrived before that (the file's fetch count when the read began is
// below the block's seq) takes anything from it, as if it had asked the
// agent itself. A read that arrived after takes from it only bytes no read
// has taken yet, and never an end of file: a sequential reader, even one
// whose requests are pipelined and served out of order, takes each byte
// once, while bytes read again and an end of file are asked of the agent
// again. So a handle kept open sees what changed since it last read, as
// with sftp-server's pread: a file re-read from the start, a log followed
// past its old end (tail -f over sshfs).

const (
	// readAhead is how many blocks past the one being read are fetched.
	readAhead = 2
	// maxBlocks bounds the read cache of one file.
	maxBlocks = 8
	// maxSpans bounds the ranges a block remembers as read; a block read
	// in more pieces than that (small reads scattered over it) is dropped
	// and fetched again by the next read.
	maxSpans = 64
)

// block is one read-ahead block; done closes when data, eof and err are set.
type block struct {
	done chan struct{}
	data []byte
	eof  bool
	err  error
	// seq numbers the fetch (file.fetches after it was counted).
	seq uint64
	// served holds the ranges of data already given to readers, sorted,
	// apart and not touching. The file's mu guards it.
	served []span
}

// span is a range [lo, hi) of a block's data.
type span struct{ lo, hi int }

// overlaps reports whether any byte of [lo, hi) was served.
func (b *block) overlaps(lo, hi int) bool {
	for _, s := range b.served {
		if s.lo < hi && lo < s.hi {
			return true
		}
	}
	return false
}

// serve records [lo, hi) as served, joining it with the ranges it meets,
// and reports false when the block keeps too many ranges to be worth it.
func (b *block) serve(lo, hi int) bool {
	if lo >= hi {
		return true
	}
	out := b.served[:0:0]
	placed := false
	for _, s := range b.served {
		switch {
		case s.hi < lo:
			out = append(out, s)
		case hi < s.lo:
			if !placed {
				out, placed = append(out, span{lo, hi}), true
			}
			out = append(out, s)
		default: // touches or overlaps: absorb
			lo, hi = min(lo, s.lo), max(hi, s.hi)
		}
	}
	if !placed {
		out = append(out, span{lo, hi})
	}
	b.served = out
	return len(out) <= maxSpans
}

// blockCache holds a file's blocks by index, least recently used evicted
// first. The file's mu guards it.
type blockCache struct {
	blocks   map[int64]*block
	lastUse  map[int64]uint64
	useClock uint64
}

// drop forgets every block: a write made them stale.
func (bc *blockCache) drop() {
	if len(bc.blocks) > 0 {
		clear(bc.blocks)
		clear(bc.lastUse)
	}
}

// forget drops block idx if it is still b.
func (bc *blockCache) forget(idx int64, b *block) {
	if bc.blocks[idx] == b {
		delete(bc.blocks, idx)
		delete(bc.lastUse, idx)
	}
}

// add caches b as block idx.
func (bc *blockCache) add(idx int64, b *block) {
	if bc.blocks == nil {
		bc.blocks = make(map[int64]*block)
		bc.lastUse = make(map[int64]uint64)
	}
	bc.blocks[idx] = b
	bc.touch(idx)
}

func (bc *blockCache) touch(idx int64) {
	bc.useClock++
	bc.lastUse[idx] = bc.useClock
}

// evict keeps at most maxBlocks, never keep.
func (bc *blockCache) evict(keep int64) {
	for len(bc.blocks) > maxBlocks {
		victim, oldest := int64(-1), ^uint64(0)
		for k := range bc.blocks {
			if k != keep && bc.lastUse[k] < oldest {
				victim, oldest = k, bc.lastUse[k]
			}
		}
		delete(bc.blocks, victim)
		delete(bc.lastUse, victim)
	}
}

// getBlock returns block idx, fetching it (and the blocks after it) if it
// is not cached. f.mu is held.
func (f *file) getBlock(idx int64) (*block, error) {
	b := f.cache.blocks[idx]
	if b == nil {
		var err error
		if b, err = f.fetch(idx); err != nil {
			return nil, err
		}
	}
	f.cache.touch(idx)
	for k := idx + 1; k <= idx+readAhead && k*chunk < f.sizeAt; k++ {
		if f.cache.blocks[k] == nil {
			if _, err := f.fetch(k); err != nil {
				break // the reader will see the error on its own fetch
			}
		}
	}
	f.cache.evict(idx)
	return b, nil
}

// fetch asks the agent for block idx and caches it. f.mu is held.
func (f *file) fetch(idx int64) (*block, error) {
	b, err := f.ask(idx*chunk, chunk)
	if err != nil {
		return nil, err
	}
	b.seq = f.fetches.Add(1)
	f.cache.add(idx, b)
	return b, nil
}

// ask asks the agent for length bytes at off, without caching them: the
// answer's data and eof are in the block once its done is closed. f.mu is
// held.
func (f *file) ask(off int64, length int) (*block, error) {
	b := &block{done: make(chan struct{})}
	err := f.send("read", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Read{Read: &agentpb.ReadOp{Offset: off, Length: int32(length)}}}, func(r *agentpb.SessionResponse, err error) {
		switch {
		case err != nil:
			b.err = f.streamErr("read", err)
		case r.GetError() != nil:
			b.err = f.replyErr("read", r.GetError())
		default:
			b.data, b.eof = r.GetRead().GetData(), r.GetRead().GetEof()
		}
		close(b.done)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// await waits for b's answer, releasing f.mu meanwhile unless it is there
// already, and reports whether it came in time.
func (f *file) await(b *block) bool {
	select {
	case <-b.done: // read ahead already: no timer, no unlock
		return true
	default:
	}
	f.mu.Unlock()
	defer f.mu.Lock()
	timer := time.NewTimer(f.g.timeout)
	defer timer.Stop()
	select {
	case <-b.done:
		return true
	case <-timer.C:
		return false
	}
}

// readAtLocked reads through the block cache for a read that arrived when
// the file's fetch count was arrival (see the top of this file). f.mu is
// held on entry and on return; it is released while waiting for the agent.
func (f *file) readAtLocked(p []byte, off int64, arrival uint64) (int, error) {
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
	if err := f.w.flush(); err != nil {
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
		if !f.await(b) {
			f.cache.forget(idx, b)
			return n, f.timedOut("read")
		}
		if b.err != nil {
			f.cache.forget(idx, b)
			return n, b.err
		}
		within := int(pos - idx*chunk)
		end := min(within+len(p)-n, len(b.data)) // what this block can give
		ends := b.eof || len(b.data) < chunk     // the file ended in it
		if b.seq <= arrival {
			// A block asked for before this read came.
			switch {
			case ends && within >= len(b.data) && n == 0:
				// Nothing but an end of file: ask for the block
				// again, for this reader to read on from (a file
				// followed past its end). The new block's seq is
				// above arrival: once per block and read. (A read
				// that got bytes before the end returns them short,
				// with io.EOF; its caller's next read, from there,
				// asks.)
				f.cache.forget(idx, b)
				continue
			case b.overlaps(within, end):
				// Read again: ask for just these bytes, and leave
				// the block to the bytes nobody has read yet.
				c, eof, err := f.readAgain(p[n:], pos)
				n += c
				if err != nil || eof && n < len(p) {
					return n, cmp.Or(err, io.EOF)
				}
				continue
			}
		}
		if within >= len(b.data) {
			if ends {
				return n, io.EOF
			}
		}
		c := copy(p[n:], b.data[within:])
		if !b.serve(within, within+c) {
			f.cache.forget(idx, b)
		}
		n += c
		if n < len(p) && b.eof && idx*chunk+int64(len(b.data)) <= off+int64(n) {
			return n, io.EOF
		}
	}
	return n, nil
}

// readAgain reads into p (up to chunk bytes of it) at pos from the agent
// directly, for bytes a cached block already gave a reader: it returns
// how many came and whether the file ended there. f.mu is held, and
// released while waiting.
func (f *file) readAgain(p []byte, pos int64) (int, bool, error) {
	want := min(len(p), chunk)
	b, err := f.ask(pos, want)
	if err != nil {
		return 0, false, err
	}
	if !f.await(b) {
		return 0, false, f.timedOut("read")
	}
	if b.err != nil {
		return 0, false, b.err
	}
	c := copy(p, b.data)
	return c, b.eof || c < want, nil
}

// DropReadAhead implements ReadAheadDropper.
func (f *file) DropReadAhead() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cache.drop()
}

// ReadAt implements io.ReaderAt. Concurrent calls are safe.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	arrival := f.fetches.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readAtLocked(p, off, arrival)
}

// Read implements io.Reader.
func (f *file) Read(p []byte) (int, error) {
	arrival := f.fetches.Load()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.readAtLocked(p, f.offset, arrival)
	f.offset += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
