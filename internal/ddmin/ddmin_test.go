package ddmin_test

import (
	"slices"
	"testing"

	"github.com/upgate/upgate/internal/ddmin"
)

// TestShrink: a sequence that fails when it holds both 3 and 7, in that
// order, shrinks to exactly those two; the budget bounds the calls.
func TestShrink(t *testing.T) {
	ops := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	fails := func(c []int) bool {
		i := slices.Index(c, 3)
		return i >= 0 && slices.Contains(c[i+1:], 7)
	}
	calls := 0
	got := ddmin.Shrink(ops, 100, func(c []int) bool { calls++; return fails(c) })
	if !slices.Equal(got, []int{3, 7}) {
		t.Errorf("Shrink: %v, want [3 7]", got)
	}
	if calls > 100 {
		t.Errorf("Shrink called test %d times, budget 100", calls)
	}
	calls = 0
	got = ddmin.Shrink(ops, 1, func(c []int) bool { calls++; return fails(c) })
	if calls != 1 || len(got) < 2 || !fails(got) {
		t.Errorf("budget 1: %d calls, %v", calls, got)
	}
}
