package agentpb

import "testing"

func TestBufferPoolClasses(t *testing.T) {
	p := NewBufferPool()
	for _, tc := range []struct{ n, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {16385, 32768},
		{1<<20 - 1, 1 << 20}, {1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1},
	} {
		b := p.Get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(*b), cap(*b), tc.n, tc.cap)
		}
		p.Put(b)
	}
	// A buffer comes back at the length asked for, from its class.
	b := p.Get(3000)
	(*b)[0] = 42
	p.Put(b)
	if c := p.Get(3500); len(*c) != 3500 || cap(*c) != 4096 {
		t.Errorf("Get(3500) after Put(Get(3000)): len %d cap %d", len(*c), cap(*c))
	}
	// Foreign buffers are not pooled.
	odd := make([]byte, 300)
	p.Put(&odd)
	if c := p.Get(300); cap(*c) != 512 {
		t.Errorf("Get(300) after a foreign Put: cap %d, want 512", cap(*c))
	}
}
