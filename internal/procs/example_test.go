package procs_test

import (
	"context"
	"fmt"
	"time"

	"github.com/upgate/upgate/internal/procs"
)

// A Controller that sees no busy session runs one P, and gives the ceiling
// back when it stops. Set stands in for runtime.GOMAXPROCS here; leave it
// nil in a server.
func ExampleController() {
	c := procs.New(procs.Config{
		Busy:     func() int { return 0 }, // the gateway's: registry.Active(time.Second)
		Max:      4,
		Interval: time.Millisecond,
		Set:      func(n int) int { fmt.Println("Ps:", n); return 0 },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c.Run(ctx) // returns when ctx ends
	// Output:
	// Ps: 1
	// Ps: 4
}
