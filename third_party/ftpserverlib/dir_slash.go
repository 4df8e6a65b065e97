package ftpserver

// A trailing slash (upgate fork, patch 21): POSIX reads "name/" as "name,
// which must be a directory", so that stat, open, unlink and rename of
// "file/" fail with ENOTDIR, and open("name/", O_CREAT) with EISDIR.
// absPath cleans the slash away, so the handlers check it against the
// client's argument before they act on the cleaned path. A check and the
// operation after it are two driver calls: a path replaced between them is
// acted on as it is then.

import (
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/afero"
)

// HasDirSlash reports whether a client's path ends in "/" or "/.", which
// POSIX resolves as a directory and path.Clean drops.
func HasDirSlash(arg string) bool {
	return strings.HasSuffix(arg, "/") || strings.HasSuffix(arg, "/.")
}

// StatArg is fsys's Stat of p, the client's arg made absolute, with a
// trailing slash's rule: a path that is not a directory (after links) is
// ENOTDIR. A driver answering a command itself (upgate's SITE) applies
// the rule with it or CheckDirSlash.
func StatArg(fsys afero.Fs, arg, p string) (os.FileInfo, error) {
	info, err := fsys.Stat(p)
	if err == nil && HasDirSlash(arg) && !info.IsDir() {
		return nil, &fs.PathError{Op: "stat", Path: p + "/", Err: syscall.ENOTDIR}
	}

	return info, err
}

// CheckDirSlash is StatArg's rule alone, for a command that acts on p
// itself afterwards: with a trailing slash p must be a directory (after
// links); without one it costs nothing.
func CheckDirSlash(fsys afero.Fs, arg, p string) error {
	if !HasDirSlash(arg) {
		return nil
	}

	_, err := StatArg(fsys, arg, p)

	return err
}

// statArg is StatArg on the session's driver.
func (c *clientHandler) statArg(arg, p string) (os.FileInfo, error) { return StatArg(c.driver, arg, p) }

// checkDirSlash is CheckDirSlash on the session's driver.
func (c *clientHandler) checkDirSlash(arg, p string) error { return CheckDirSlash(c.driver, arg, p) }

// entryDirSlash is a trailing slash's rule for the calls that act on a
// link itself (unlink, rmdir, rename): with slash, the entry p must be a
// directory, not a file nor a link to a directory (Linux answers those
// ENOTDIR). It is nil without a slash.
func (c *clientHandler) entryDirSlash(op string, slash bool, p string) error {
	if !slash {
		return nil
	}

	var (
		info os.FileInfo
		err  error
	)

	if l, ok := c.driver.(afero.Lstater); ok {
		info, _, err = l.LstatIfPossible(p)
	} else {
		info, err = c.driver.Stat(p)
	}

	if err != nil {
		return err
	}

	if !info.IsDir() {
		return &fs.PathError{Op: op, Path: p + "/", Err: syscall.ENOTDIR}
	}

	return nil
}

// openDirSlash is a trailing slash's rule for a transfer's open: an
// upload to "name/" is EISDIR whatever name is, as open(2) with O_CREAT
// answers; a download needs a directory (refused later as one).
func (c *clientHandler) openDirSlash(arg, p string, write bool) error {
	if write && HasDirSlash(arg) {
		return &fs.PathError{Op: "open", Path: p + "/", Err: syscall.EISDIR}
	}

	return c.checkDirSlash(arg, p)
}
