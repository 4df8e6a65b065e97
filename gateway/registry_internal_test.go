package gateway

import "testing"

// TestPeakOpenFiles: a session's peak of open files is the most open at
// once, whatever order they close in; closing one twice counts once.
func TestPeakOpenFiles(t *testing.T) {
	var s Session
	a, b := s.fileOpened(), s.fileOpened()
	a()
	a()
	c, d := s.fileOpened(), s.fileOpened()
	if got := s.peakFiles.Load(); got != 3 {
		t.Fatalf("peak %d after 2, 1, 3 open, want 3", got)
	}
	b()
	c()
	d()
	if open, peak := s.openFiles.Load(), s.peakFiles.Load(); open != 0 || peak != 3 {
		t.Fatalf("open %d, peak %d after all closed, want 0 and 3", open, peak)
	}
}
