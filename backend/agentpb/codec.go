package agentpb

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
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
}

var _ encoding.CodecV2 = (*Codec)(nil)

// NewCodec returns a codec drawing its buffers from pool, which the same
// connection's transport should use too (NewBufferPool).
func NewCodec(pool *BufferPool) *Codec { return &Codec{pool: pool} }

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
// copied out of the (pooled, then released) contiguous buffer.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("agentpb: cannot unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
