package agentpb

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestCodecWireCompatible: messages the Codec marshals are what
// proto.Marshal (grpc's default codec) produces, and it reads theirs, for a
// small message and for a write message of about 1 MiB from a pool whose
// buffers held other bytes before.
func TestCodecWireCompatible(t *testing.T) {
	pool := NewBufferPool()
	// Dirty the pool's 1 MiB class.
	for range 4 {
		b := pool.Get(1 << 20)
		for i := range *b {
			(*b)[i] = 0xAA
		}
		pool.Put(b)
	}
	c := NewCodec(pool)
	if c.Name() != "proto" {
		t.Fatalf("Name %q, want proto (the content subtype must not change)", c.Name())
	}
	data := make([]byte, 1<<20-64)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, m := range []*FileRequest{
		{Id: 1, Op: &FileRequest_Close{Close: &CloseOp{}}},
		{Id: 2, Op: &FileRequest_Write{Write: &WriteOp{Offset: 1 << 40, Data: data}}},
	} {
		out, err := c.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("Marshal(id %d): %d bytes, differs from proto.Marshal's %d", m.GetId(), len(got), len(want))
		}
		out.Free()

		// Unmarshal what proto.Marshal made, split like frames.
		var in mem.BufferSlice
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 16<<10)
			in = append(in, mem.SliceBuffer(rest[:n]))
			rest = rest[n:]
		}
		var got FileRequest
		if err := c.Unmarshal(in, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, m) {
			t.Fatalf("Unmarshal(id %d): not the message marshaled", m.GetId())
		}
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("Marshal of a string: no error")
	}
}
