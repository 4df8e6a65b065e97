package agentpb

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// BufferPool is the buffer pool both ends of the Agent service give the
// gRPC transport (experimental.WithBufferPool / experimental.BufferPool,
// for its frames) and their Codec (for whole messages): buffers in
// power-of-two classes from 256 bytes to 1 MiB, reused without being
// cleared. grpc-go's default pool clears every buffer it hands out; for
// the 1 MiB messages a file moves in, that is a memclr of each message on
// each end. Every user fills what it takes: a frame is read in full, a
// message is marshaled into exactly its size or materialized from the
// frames, a large write's data is copied from the frames into exactly its
// size (Codec.Unmarshal, given back by RecycleWrite), so nothing stale is
// ever sent or parsed.
type BufferPool struct {
	classes [numClasses]sync.Pool
}

const (
	minClassShift = 8  // 256 bytes
	maxClassShift = 20 // 1 MiB
	numClasses    = maxClassShift - minClassShift + 1
)

var _ mem.BufferPool = (*BufferPool)(nil)

// NewBufferPool returns an empty pool.
func NewBufferPool() *BufferPool { return &BufferPool{} }

// class is the index of the smallest class that holds n bytes, or -1 when
// n is over the largest.
func class(n int) int {
	if n > 1<<maxClassShift {
		return -1
	}
	shift := bits.Len(uint(max(n, 1) - 1))
	return max(shift, minClassShift) - minClassShift
}

// Get returns a buffer of length n; its contents are unspecified.
func (p *BufferPool) Get(n int) *[]byte {
	c := class(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

// Put returns a buffer from Get to the pool.
func (p *BufferPool) Put(b *[]byte) {
	c := class(cap(*b))
	if c < 0 || cap(*b) != 1<<(c+minClassShift) {
		return // not one of ours: leave it to the garbage collector
	}
	p.classes[c].Put(b)
}
