package sftp

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestPending: a wait returns at once with nothing counted, when the count
// drops to zero, or false at its bound; work may start while a wait is
// under way (a sync.WaitGroup forbids that Add).
func TestPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p pending
		if !p.wait(time.Second) {
			t.Fatal("wait with nothing counted: false")
		}
		done := p.add()
		start := time.Now()
		if p.wait(5 * time.Second) {
			t.Fatal("wait with work counted returned true")
		}
		if waited := time.Since(start); waited != 5*time.Second {
			t.Errorf("waited %v, want the bound", waited)
		}
		result := make(chan bool)
		go func() { result <- p.wait(time.Minute) }()
		synctest.Wait() // the wait is under way
		late := p.add() // work that starts meanwhile
		done()
		time.Sleep(time.Second)
		late()
		if !<-result || time.Since(start) != 6*time.Second {
			t.Errorf("the wait did not end when the last work did (%v)", time.Since(start))
		}
	})
}
