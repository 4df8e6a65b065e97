package backend

import (
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

const (
	// readAhead is how many blocks past the one being read are fetched.
	readAhead = 2
	// maxBlocks bounds the read cache of one file.
	maxBlocks = 8
)

// block is one read-ahead block; done closes when data, eof and err are set.
type block struct {
	done chan struct{}
	data []byte
	eof  bool
	err  error
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

// fetch asks the agent for block idx. f.mu is held.
func (f *file) fetch(idx int64) (*block, error) {
	b := &block{done: make(chan struct{})}
	err := f.send("read", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Read{Read: &agentpb.ReadOp{Offset: idx * chunk, Length: chunk}}}, func(r *agentpb.SessionResponse, err error) {
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
	f.cache.add(idx, b)
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
		timedOut := false
		select {
		case <-b.done: // read ahead already: no timer, no unlock
		default:
			f.mu.Unlock()
			timer := time.NewTimer(f.g.timeout)
			select {
			case <-b.done:
			case <-timer.C:
				timedOut = true
			}
			timer.Stop()
			f.mu.Lock()
		}
		if timedOut {
			if f.cache.blocks[idx] == b {
				delete(f.cache.blocks, idx)
			}
			return n, f.timedOut("read")
		}
		if b.err != nil {
			if f.cache.blocks[idx] == b {
				delete(f.cache.blocks, idx)
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
