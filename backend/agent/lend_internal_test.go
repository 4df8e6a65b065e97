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
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // as parentDirPath opens it
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

	t.Run("own directory 0555", func(t *testing.T) {
		fd, dir := open(t, 0o555, os.Getegid())
		var during uint32
		if err := lendOwnDir(fd, dir, me, log, refusedOnce(dir, &during, nil)); err != nil {
			t.Fatalf("lendOwnDir: %v", err)
		}
		if during != 0o755 {
			t.Errorf("mode during the change %#o, want 0755", during)
		}
		if got := modeOf(t, dir); got != 0o555 {
			t.Errorf("mode after %#o, want 0555", got)
		}
	})
	t.Run("own directory 0444 (no search bit either)", func(t *testing.T) {
		fd, dir := open(t, 0o444, os.Getegid())
		var during uint32
		if err := lendOwnDir(fd, dir, me, log, refusedOnce(dir, &during, nil)); err != nil {
			t.Fatalf("lendOwnDir: %v", err)
		}
		if during != 0o744 {
			t.Errorf("mode during the change %#o, want 0744", during)
		}
		if got := modeOf(t, dir); got != 0o444 {
			t.Errorf("mode after %#o, want 0444", got)
		}
	})
	t.Run("a chmod made meanwhile stays", func(t *testing.T) {
		fd, dir := open(t, 0o555, os.Getegid())
		var during uint32
		chmod := func() {
			if err := unix.Chmod(dir, 0o700); err != nil {
				t.Error(err)
			}
		}
		if err := lendOwnDir(fd, dir, me, log, refusedOnce(dir, &during, chmod)); err != nil {
			t.Fatalf("lendOwnDir: %v", err)
		}
		if got := modeOf(t, dir); got != 0o500 {
			t.Errorf("mode after %#o, want 0500 (the chmod's 0700 without the lent write bit)", got)
		}
	})
	t.Run("another user's directory", func(t *testing.T) {
		fd, dir := open(t, 0o555, os.Getegid())
		var during uint32
		if err := lendOwnDir(fd, dir, me+1, log, refusedOnce(dir, &during, nil)); err != unix.EACCES {
			t.Errorf("lendOwnDir: %v, want EACCES", err)
		}
		if got := modeOf(t, dir); got != 0o555 || during != 0 {
			t.Errorf("mode after %#o (during %#o), want 0555 untouched", got, during)
		}
	})
	t.Run("setgid directory of a group not the agent's", func(t *testing.T) {
		gid := 54321
		if inGroup(uint32(gid)) {
			t.Skip("the test's user is in group 54321")
		}
		fd, dir := open(t, 0o2555, gid)
		var during uint32
		if err := lendOwnDir(fd, dir, me, log, refusedOnce(dir, &during, nil)); err != unix.EACCES {
			t.Errorf("lendOwnDir: %v, want EACCES", err)
		}
		if got := modeOf(t, dir); got != 0o2555 || during != 0 {
			t.Errorf("mode after %#o (during %#o), want 02555 untouched", got, during)
		}
	})
	t.Run("setgid directory of the agent's group", func(t *testing.T) {
		fd, dir := open(t, 0o2555, os.Getegid())
		var during uint32
		if err := lendOwnDir(fd, dir, me, log, refusedOnce(dir, &during, nil)); err != nil {
			t.Fatalf("lendOwnDir: %v", err)
		}
		if got := modeOf(t, dir); got != 0o2555 {
			t.Errorf("mode after %#o, want 02555", got)
		}
	})
}
