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

// frames splits b into buffers of at most n bytes, as the transport hands
// a message over in frames.
func frames(b []byte, n int) mem.BufferSlice {
	var in mem.BufferSlice
	for len(b) > 0 {
		k := min(len(b), n)
		in = append(in, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return in
}

// TestCodecWriteFromPool: a large write, as any marshaler lays it out,
// is decoded with its data in a buffer of the pool (which RecycleWrite
// returns there); anything else goes through proto.Unmarshal. Either way
// the message is the one marshaled.
func TestCodecWriteFromPool(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, c := range []struct {
		name string
		m    *SessionRequest
		pool bool
	}{
		{"write", &SessionRequest{Id: 7, File: 3, Op: &SessionRequest_Write{Write: &WriteOp{Offset: 1 << 33, Data: big}}}, true},
		{"no ids, no offset", &SessionRequest{Op: &SessionRequest_Write{Write: &WriteOp{Data: big}}}, true},
		{"negative offset", &SessionRequest{Id: 1, File: 2, Op: &SessionRequest_Write{Write: &WriteOp{Offset: -5, Data: big}}}, true},
		{"1 MiB class", &SessionRequest{Id: 1<<64 - 1, File: 1<<64 - 1, Op: &SessionRequest_Write{Write: &WriteOp{Offset: -1, Data: bytes.Repeat(big, 16)[:1<<20]}}}, true},
		{"small write", &SessionRequest{Id: 1, File: 2, Op: &SessionRequest_Write{Write: &WriteOp{Data: big[:100]}}}, false},
		{"close with a write", &SessionRequest{Id: 1, File: 2, Op: &SessionRequest_Close{Close: &CloseOp{Write: &WriteOp{Data: big}}}}, false},
		{"stat", &SessionRequest{Id: 1, Op: &SessionRequest_Stat{Stat: &PathRequest{Path: big}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			wire, err := proto.Marshal(c.m)
			if err != nil {
				t.Fatal(err)
			}
			pool := NewBufferPool()
			codec := NewCodec(pool)
			var got SessionRequest
			if fast := codec.unmarshalWrite(frames(wire, 16<<10), &got); fast != c.pool {
				t.Fatalf("decoded into the pool: %v, want %v", fast, c.pool)
			}
			got.Reset()
			if err := codec.Unmarshal(frames(wire, 1000), &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, c.m) {
				t.Fatal("not the message marshaled")
			}
			if !c.pool {
				return
			}
			// The race detector's sync.Pool drops a quarter of what it
			// is given: one of twenty tries comes back.
			data := got.GetWrite().GetData()
			back := false
			for range 20 {
				RecycleWrite(pool, &got)
				if again := pool.Get(len(data)); &(*again)[0] == &data[:1][0] {
					back = true
					break
				}
			}
			if !back {
				t.Fatal("RecycleWrite did not return the data's buffer to the pool")
			}
		})
	}
}

// FuzzCodecWrite: whatever bytes arrive, in whatever frames, a message
// unmarshalWrite decodes is the message proto.Unmarshal decodes from them.
// The codec takes writes of any size here, so that inputs stay small.
func FuzzCodecWrite(f *testing.F) {
	data := []byte("some data, some more data, and a little more of it")
	for _, m := range []*SessionRequest{
		{Id: 7, File: 3, Op: &SessionRequest_Write{Write: &WriteOp{Offset: 1 << 33, Data: data}}},
		{Op: &SessionRequest_Write{Write: &WriteOp{Data: bytes.Repeat(data, 2)}}},
		{Id: 1 << 60, File: 1, Op: &SessionRequest_Write{Write: &WriteOp{Offset: -1, Data: data}}},
		{Id: 1, Op: &SessionRequest_Close{Close: &CloseOp{Write: &WriteOp{Data: data}}}},
	} {
		wire, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, uint8(16))
		f.Add(wire, uint8(3))
	}
	f.Fuzz(func(t *testing.T, wire []byte, frame uint8) {
		codec := NewCodec(NewBufferPool())
		codec.minPooled = 0
		var got SessionRequest
		if !codec.unmarshalWrite(frames(wire, max(int(frame), 1)), &got) {
			return
		}
		var want SessionRequest
		if err := proto.Unmarshal(wire, &want); err != nil {
			t.Fatalf("decoded what proto.Unmarshal refuses (%v)", err)
		}
		if !proto.Equal(&got, &want) {
			t.Fatal("decoded a message other than proto.Unmarshal's")
		}
	})
}
