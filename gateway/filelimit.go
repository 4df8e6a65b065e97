package gateway

import (
	"fmt"
	"io/fs"
	"sync"
	"syscall"
)

// fileLimits counts the files each user holds open over all their
// sessions (connections.max_files_per_user), so that one user cannot take
// every stream and descriptor of an agent shared with others.
type fileLimits struct {
	// mu guards max and open.
	mu   sync.Mutex
	max  int
	open map[string]int // by user name
}

func newFileLimits(max int) *fileLimits {
	return &fileLimits{max: max, open: make(map[string]int)}
}

func (l *fileLimits) setMax(max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = max
}

// acquire counts one more open file of user's, or refuses it with EMFILE
// naming the limit; release undoes it (once).
func (l *fileLimits) acquire(user, name string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open[user] >= l.max {
		return nil, &fs.PathError{Op: "open", Path: name,
			Err: fmt.Errorf("%w: user %s holds %d open files (connections.max_files_per_user)", syscall.EMFILE, user, l.open[user])}
	}
	l.open[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[user]--; l.open[user] <= 0 {
				delete(l.open, user)
			}
		})
	}, nil
}
