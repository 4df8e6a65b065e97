package agent

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLendOwnDir: a change the directory refuses (EACCES) runs again with
// its owner's missing write and search bits lent, which are taken back
// afterwards without undoing a chmod made meanwhile; nothing is lent to
// another user's directory or to a setgid one whose group the agent's
// user is not in. The refusal is played by change (the test runs as
// root, whom the kernel does not refuse); the modes are the kernel's.
func TestLendOwnDir(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(t *testing.T, mode uint32, gid int) (int, string) {
		t.Helper()
		dir := t.TempDir()
		if err := os.Chown(dir, os.Geteuid(), gid); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // as parentDir opens it
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd); _ = os.Chmod(dir, 0o755) })
		return fd, dir
	}
	modeOf := func(t *testing.T, dir string) uint32 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode & 0o7777
	}
	// refusedOnce answers EACCES to its first call; its second call
	// records the directory's mode and runs then, if any.
	refusedOnce := func(dir string, during *uint32, then func()) func() error {
		calls := 0
		return func() error {
			calls++
			if calls == 1 {
				return unix.EACCES
			}
			var st unix.Stat_t
			if err := unix.Stat(dir, &st); err == nil {
				*during = st.Mode & 0o7777
			}
			if then != nil {
				then()
			}
			return nil
		}
	}
	me := uint32(os.Geteuid())
	const otherGroup = 54321
	for _, c := range []struct {
		name      string
		mode      uint32
		gid       int    // the directory's group; 0 is the test's
		owner     uint32 // the agent's user as lendOwnDir is told it
		meanwhile uint32 // a chmod during the change; 0 for none
		err       error  // lendOwnDir's answer
		during    uint32 // the mode during the change; 0: not run again
		after     uint32
	}{
		{name: "own directory 0555", mode: 0o555, owner: me, during: 0o755, after: 0o555},
		{name: "own directory 0444 (no search bit either)", mode: 0o444, owner: me, during: 0o744, after: 0o444},
		{name: "a chmod made meanwhile stays", mode: 0o555, owner: me, meanwhile: 0o700, during: 0o755, after: 0o500},
		{name: "another user's directory", mode: 0o555, owner: me + 1, err: unix.EACCES, after: 0o555},
		{name: "setgid directory of a group not the agent's", mode: 0o2555, gid: otherGroup, owner: me, err: unix.EACCES, after: 0o2555},
		{name: "setgid directory of the agent's group", mode: 0o2555, owner: me, during: 0o2755, after: 0o2555},
	} {
		t.Run(c.name, func(t *testing.T) {
			gid := c.gid
			if gid == 0 {
				gid = os.Getegid()
			} else if inGroup(uint32(gid)) {
				t.Skipf("the test's user is in group %d", gid)
			}
			fd, dir := open(t, c.mode, gid)
			var during uint32
			var chmod func()
			if c.meanwhile != 0 {
				chmod = func() {
					if err := unix.Chmod(dir, c.meanwhile); err != nil {
						t.Error(err)
					}
				}
			}
			if err := lendOwnDir(fd, dir, c.owner, log, refusedOnce(dir, &during, chmod)); err != c.err {
				t.Errorf("lendOwnDir: %v, want %v", err, c.err)
			}
			if during != c.during {
				t.Errorf("mode during the change %#o, want %#o (0: not run again)", during, c.during)
			}
			if got := modeOf(t, dir); got != c.after {
				t.Errorf("mode after %#o, want %#o", got, c.after)
			}
		})
	}
}
