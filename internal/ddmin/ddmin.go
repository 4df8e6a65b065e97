// Package ddmin shrinks a failing sequence of operations to a short one
// that still fails: Zeller's delta debugging (ddmin), removing chunks.
// The random differential tests (interop/differential, interop/sshfs)
// use it to turn a seed's difference into the few calls that show it.
package ddmin

// Shrink returns a subsequence of ops, as short as it finds, for which
// test still holds (test(ops) is taken to hold), calling test at most
// budget times. test must not keep or change the slice it is given.
func Shrink[T any](ops []T, budget int, test func([]T) bool) []T {
	try := func(c []T) bool {
		if budget <= 0 {
			return false
		}
		budget--
		return test(c)
	}
	n := 2
	for len(ops) >= 2 && budget > 0 {
		chunk := (len(ops) + n - 1) / n
		reduced := false
		for i := 0; i < len(ops); i += chunk {
			c := append(append([]T(nil), ops[:i]...), ops[min(i+chunk, len(ops)):]...)
			if try(c) {
				ops, n, reduced = c, max(n-1, 2), true
				break
			}
		}
		if !reduced {
			if n >= len(ops) {
				break
			}
			n = min(2*n, len(ops))
		}
	}
	return ops
}
