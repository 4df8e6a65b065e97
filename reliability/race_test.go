//go:build race

package reliability_test

// raceEnabled: the race detector allows 8128 live goroutines, fewer than
// TestLoad's clients and gateway have in one process.
const raceEnabled = true
