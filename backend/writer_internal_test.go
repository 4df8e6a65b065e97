package backend

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzCoalescer drives the coalescer with writes of any size at any
// offset, interleaved with flushes, and checks that the messages it emits,
// applied in order to a buffer, leave exactly what the writes applied
// directly to a reference buffer leave; that no message exceeds chunk
// bytes; and that what it holds back stays within its bounds.
func FuzzCoalescer(f *testing.F) {
	// Each op is 8 bytes: offset (3 bytes, in KiB-ish units), length (3),
	// a fill byte, and a flags byte (bit 0: flush after).
	seed := func(ops ...[4]int) []byte {
		var b []byte
		for _, op := range ops {
			var x [8]byte
			x[0], x[1], x[2] = byte(op[0]>>16), byte(op[0]>>8), byte(op[0])
			x[3], x[4], x[5] = byte(op[1]>>16), byte(op[1]>>8), byte(op[1])
			x[6], x[7] = byte(op[2]), byte(op[3])
			b = append(b, x[:]...)
		}
		return b
	}
	f.Add(seed([4]int{0, 4096, 1, 0}))
	f.Add(seed([4]int{0, 32768, 1, 0}, [4]int{32768, 32768, 2, 0}, [4]int{65536, 1 << 20, 3, 1}))
	f.Add(seed([4]int{65536, 32768, 1, 0}, [4]int{0, 65536, 2, 0}, [4]int{100, 10, 3, 0}))
	f.Add(seed([4]int{0, chunk - 1, 1, 0}, [4]int{chunk - 1, 3, 2, 0}, [4]int{10, chunk * 2, 4, 0}))
	f.Add(seed([4]int{1 << 20, 1, 7, 0}, [4]int{3 << 20, 1, 8, 0}, [4]int{5 << 20, 2 << 20, 9, 1}))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const space = 12 << 20
		var ref, got []byte
		apply := func(buf *[]byte, off int64, data []byte) {
			if need := int(off) + len(data); need > len(*buf) {
				*buf = append(*buf, make([]byte, need-len(*buf))...)
			}
			copy((*buf)[off:], data)
		}
		var pool bufferPool
		// Every other message offered as a loan is kept, as a stream
		// that lends keeps it until the agent answers: here until the
		// next check, which sees that the coalescer left it alone and
		// returns it to the pool.
		type loan struct{ buf, was []byte }
		var loans []loan
		emits := 0
		c := coalescer{pool: &pool, emit: func(off int64, data []byte, lend bool) (bool, error) {
			if len(data) == 0 || len(data) > chunk {
				t.Fatalf("message of %d bytes at %d", len(data), off)
			}
			apply(&got, off, data)
			emits++
			if lend && emits%2 == 0 {
				loans = append(loans, loan{data, bytes.Clone(data)})
				return true, nil
			}
			return false, nil
		}}
		check := func() {
			for _, l := range loans {
				if !bytes.Equal(l.buf, l.was) {
					t.Fatalf("a lent buffer of %d bytes changed before its answer", len(l.buf))
				}
				pool.put(l.buf)
			}
			loans = loans[:0]
			held := 0
			for _, e := range c.extents {
				held += len(e.data)
			}
			if held != c.buffered {
				t.Fatalf("buffered %d, extents hold %d", c.buffered, held)
			}
			if len(c.extents) > maxExtents || c.buffered > maxBuffered {
				t.Fatalf("holds %d extents, %d bytes: over the bounds", len(c.extents), c.buffered)
			}
		}
		for i := 0; i+8 <= len(ops) && i < 8*64; i += 8 {
			x := ops[i : i+8]
			off := int64(uint32(x[0])<<16|uint32(x[1])<<8|uint32(x[2])) % space
			n := int(uint32(x[3])<<16|uint32(x[4])<<8|uint32(x[5])) % (3 << 20)
			if n == 0 {
				continue
			}
			data := bytes.Repeat([]byte{x[6]}, n)
			if n >= 2 {
				binary.BigEndian.PutUint16(data, uint16(i)) // distinguish the writes
			}
			apply(&ref, off, data)
			if err := c.add(data, off); err != nil {
				t.Fatal(err)
			}
			clear(data) // the coalescer must have copied it
			check()
			if x[7]&1 != 0 {
				if err := c.flush(); err != nil {
					t.Fatal(err)
				}
				check()
			}
		}
		if err := c.flush(); err != nil {
			t.Fatal(err)
		}
		check() // the loans of the last flush too
		if len(c.extents) != 0 || c.buffered != 0 {
			t.Fatalf("after flush: %d extents, %d bytes held", len(c.extents), c.buffered)
		}
		if !bytes.Equal(got, ref) {
			i := 0
			for i < len(got) && i < len(ref) && got[i] == ref[i] {
				i++
			}
			t.Fatalf("result differs from the reference at byte %d (got %d bytes, want %d)", i, len(got), len(ref))
		}
	})
}

// TestConcurrentDrains: two drains of one window while its writes are
// acknowledged one by one (an SFTP Flush beside a Reopen) both end as
// soon as the last write is acknowledged, instead of splitting the
// window's slots between them until both time out.
func TestConcurrentDrains(t *testing.T) {
	w := newWindow()
	for range writeWindow {
		if err := w.acquire(time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	const timeout = 10 * time.Second
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- w.drain(timeout, nil) }()
	}
	time.Sleep(20 * time.Millisecond) // both drains waiting
	start := time.Now()
	for range writeWindow {
		w.release()
		time.Sleep(2 * time.Millisecond) // each slot goes to a waiting drain
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("drain: %v", err)
		}
	}
	if took := time.Since(start); took >= timeout {
		t.Fatalf("the drains took %v: they waited for their timeout", took)
	}
}
