//go:build race

package backend_test

// raceEnabled: the race detector's sync.Pool drops some of what it is
// given, and its runtime allocates more, so allocation bounds do not hold
// under it.
const raceEnabled = true
