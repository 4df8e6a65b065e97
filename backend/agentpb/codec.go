package agentpb

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Codec is the protobuf codec both ends of the Agent service use (grpc
// ForceCodecV2 / ForceServerCodecV2): the same wire format and content
// subtype as grpc-go's own "proto" codec, so either end may still run
// the default codec, but marshaling into and unmarshaling out of a
// BufferPool rather than grpc's default pool, which clears every buffer
// it hands out (a 1 MiB memclr per file message on each end).
type Codec struct {
	pool *BufferPool
	// minPooled is the least write data unmarshalWrite takes
	// (writeRecycleMin; tests lower it).
	minPooled int
}

var _ encoding.CodecV2 = (*Codec)(nil)

// NewCodec returns a codec drawing its buffers from pool, which the same
// connection's transport should use too (NewBufferPool).
func NewCodec(pool *BufferPool) *Codec { return &Codec{pool: pool, minPooled: writeRecycleMin} }

// Name is grpc's name for the protobuf codec: the content subtype on the
// wire does not change.
func (c *Codec) Name() string { return "proto" }

// Marshal encodes v, a generated message, into one pooled buffer (small
// messages into a plain slice, as grpc does).
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("agentpb: cannot marshal %T: not a protobuf message", v)
	}
	size := proto.Size(m)
	// UseCachedSize reuses the Size just computed; m is not changed
	// concurrently.
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

// Unmarshal decodes data into v, a generated message. The message is
// copied out of the (pooled, then released) contiguous buffer; a
// SessionRequest that is a write has its data copied once, straight from
// the frames into a buffer of the pool (see unmarshalWrite).
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("agentpb: cannot unmarshal into %T: not a protobuf message", v)
	}
	if r, ok := m.(*SessionRequest); ok && c.unmarshalWrite(data, r) {
		return nil
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// Wire field numbers unmarshalWrite reads (agent.proto).
const (
	fieldRequestID    = 1  // SessionRequest.id
	fieldRequestFile  = 2  // SessionRequest.file
	fieldRequestWrite = 21 // SessionRequest.write
	fieldWriteOffset  = 1  // WriteOp.offset
	fieldWriteData    = 2  // WriteOp.data
)

const (
	// writeHeaderMax bounds the bytes before a write's data in the
	// shape unmarshalWrite reads: five tags and five varints.
	writeHeaderMax = 64
	// writeRecycleMin is the least data unmarshalWrite takes: below it,
	// proto.Unmarshal's copies cost little.
	writeRecycleMin = 16 << 10
)

// unmarshalWrite decodes data into m when it is a write in the shape every
// marshaler gives one (proto.Marshal's field order): id and file if set,
// then the write, last, whose offset (if set) comes before its data, last
// too. The data is copied once, from the frames into a buffer of the pool
// (proto.Unmarshal would copy the frames into one buffer and then the
// data out of it into a fresh allocation: for the 1 MiB messages a bulk
// upload is made of, two copies and the collector's work on each). The
// agent gives that buffer back to the pool once it has written it
// (RecycleWrite). Anything else, small writes included, is left to
// proto.Unmarshal: ok is false and m untouched.
func (c *Codec) unmarshalWrite(data mem.BufferSlice, m *SessionRequest) (ok bool) {
	total := data.Len()
	if total < writeHeaderMax+c.minPooled {
		return false
	}
	var head [writeHeaderMax]byte
	data.CopyTo(head[:])
	r := fieldReader{p: head[:]}
	id, _ := r.next(fieldRequestID, protowire.VarintType)
	file, _ := r.next(fieldRequestFile, protowire.VarintType)
	size, ok := r.next(fieldRequestWrite, protowire.BytesType)
	if !ok || size != uint64(total-(len(head)-len(r.p))) {
		return false // not a write, or not the last field
	}
	offset, _ := r.next(fieldWriteOffset, protowire.VarintType)
	size, ok = r.next(fieldWriteData, protowire.BytesType)
	start := len(head) - len(r.p)
	if !ok || size != uint64(total-start) {
		return false // no data, or not the write's last field
	}
	buf := c.pool.Get(int(size))
	readAt(data, *buf, start)
	m.Reset()
	m.Id, m.File = id, file
	m.Op = &SessionRequest_Write{Write: &WriteOp{Offset: int64(offset), Data: *buf}}
	return true
}

// fieldReader reads a message's fields in the order it expects them.
type fieldReader struct {
	p   []byte // what is left to read
	bad bool   // a varint was malformed: nothing more is read
}

// next reads field num if it comes next with wire type typ: a varint's
// value, or a length-delimited field's length (its bytes stay unread). ok
// is false when another field comes next (a field left at zero is not on
// the wire) or the input is malformed.
func (r *fieldReader) next(num protowire.Number, typ protowire.Type) (v uint64, ok bool) {
	if r.bad {
		return 0, false
	}
	n, t, k := protowire.ConsumeTag(r.p)
	if k < 0 || n != num || t != typ {
		return 0, false
	}
	v, m := protowire.ConsumeVarint(r.p[k:])
	if m < 0 {
		r.bad = true
		return 0, false
	}
	r.p = r.p[k+m:]
	return v, true
}

// readAt fills dst from data's bytes from off on (as many as there are).
func readAt(data mem.BufferSlice, dst []byte, off int) {
	for _, b := range data {
		d := b.ReadOnlyData()
		if off >= len(d) {
			off -= len(d)
			continue
		}
		n := copy(dst, d[off:])
		dst, off = dst[n:], 0
		if len(dst) == 0 {
			return
		}
	}
}

// RecycleWrite gives the data of req, a write Codec.Unmarshal decoded into
// a buffer of pool (unmarshalWrite: a WriteOp of at least writeRecycleMin
// bytes), back to pool once the data is written and nothing holds it; it
// leaves other requests alone. The caller owns the data: the agent, for
// requests gRPC delivered; never a buffer someone lent it.
func RecycleWrite(pool *BufferPool, req *SessionRequest) {
	d := req.GetWrite().GetData()
	if len(d) < writeRecycleMin {
		return
	}
	d = d[:0]
	pool.Put(&d)
}
