package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// A link made through the agent must never lead out of the user's root,
// for upgate (whose os.Root refuses to follow one anyway) or for any
// program that follows links: a web server, a backup running as root.
// confined checks where a new link leads through the links that exist
// now; that alone does not last, since the tree changes afterwards: a
// link moved to a shallower directory climbs further (sub/up -> .. moved
// to up), a name it passes through can become a link (ok ->
// sub/missing/../bob, then sub/missing -> ..), and a hard link of a link
// is the link in another directory.
//
// So every link made, moved or linked through the agent also keeps a
// shape that stays safe whatever happens around it (linkShape): its ".."
// components all come first, and there are no more of them than the
// directories between the link and the user's root. Each link then leads
// to somewhere below one of its own directory's ancestors inside the
// root, through links that do the same, whatever those are when it is
// followed. Moves keep the shape: a link moved to another directory, and
// the links inside a directory moved to a shallower place, are checked at
// their new depth, and a move that would break it is refused. Server
// .links orders these checks with the operations they check and with
// Mkdir (a directory made where a link was changes where a checked path
// leads); uploads commit regular files only.
//
// Links made in the container by anything but the agent are not the
// agent's to police; confined still refuses a new link that leads out of
// the root through one of them.

// linkShape checks that target, the content of a link in a directory
// depth levels below the user's root, keeps the shape above: its ".."
// components first, at most depth of them.
func linkShape(target string, depth int) error {
	up, named := 0, false
	for _, e := range strings.Split(target, "/") {
		switch e {
		case "", ".":
		case "..":
			if named {
				return errors.New(`".." after a name (that name could become a link that leads elsewhere)`)
			}
			up++
		default:
			named = true
		}
	}
	if up > depth {
		return fmt.Errorf(`%d ".." from a directory %d below the user's root`, up, depth)
	}
	return nil
}

// depth is how many directories below the scope's root dir (a cleaned
// path relative to the scope) is, once the links on its way are followed.
func (c *scope) depth(dir string) (int, error) {
	stack, err := c.resolve(nil, strings.Split(dir, "/"))
	return len(stack), err
}

// checkLinkAt checks the link at p (relative to the scope), as it would
// be in directory dir: its shape (linkShape) at dir's depth.
func (c *scope) checkLinkAt(p, dir string) error {
	target, err := c.r.Readlink(p)
	if err != nil {
		return err
	}
	d, err := c.depth(dir)
	if err != nil {
		return err
	}
	if err := linkShape(target, d); err != nil {
		return fmt.Errorf("the link %q -> %q in %q: %w", p, target, dir, err)
	}
	return nil
}

// checkMove refuses a rename of from to to (relative to the scope) that
// would make a link lead out of the user's root: a link moved to another
// directory is checked there, and the links inside a directory moved to a
// shallower one at their new depth (a directory there that cannot be read
// refuses the move). A from that cannot be looked at is left to the
// rename to report.
func (c *scope) checkMove(from, to string) error {
	fi, err := c.r.Lstat(from)
	if err != nil {
		return nil
	}
	fromDir, toDir := path.Dir(from), path.Dir(to)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if fromDir == toDir {
			return nil
		}
		return c.checkLinkAt(from, toDir)
	case fi.IsDir():
		df, err := c.depth(fromDir)
		if err != nil {
			return err
		}
		dt, err := c.depth(toDir)
		if err != nil {
			return err
		}
		if dt >= df {
			return nil
		}
		// Deeper or as deep keeps every shape; shallower is checked
		// link by link, each at its depth under the new name. What
		// cannot be read is refused: rename(2) of from does not need to
		// read inside it, and a link there could not be checked.
		return c.checkLinksIn(from, to, dt+1)
	}
	return nil
}

// checkLinksIn checks every link below the directory dir (relative to
// the scope), at depth d for those directly in it, as they would be below
// to. It reads entries' kinds from the directory itself (direntTypes), so
// a directory its user may read but not search (0600) that holds only
// files is moved as rename(2) moves it; a link or a directory in it could
// not be looked at, and refuses the move, as does a directory that cannot
// be read.
func (c *scope) checkLinksIn(dir, to string, d int) error {
	f, err := openDirUnread(c.r, dir)
	if err != nil {
		return fmt.Errorf("cannot check the links in %q: %w", dir, err)
	}
	defer f.Close()
	var refused error // the first entry's refusal, passed up as it is
	err = direntTypes(f, func(name string, typ uint8) error {
		refused = c.checkEntry(dir, to, name, typ, d)
		return refused
	})
	if refused != nil {
		return refused
	}
	if err != nil {
		return fmt.Errorf("cannot check the links in %q: %w", dir, err)
	}
	return nil
}

// checkEntry is checkLinksIn's check of one entry of dir, name, of kind
// typ (d_type).
func (c *scope) checkEntry(dir, to, name string, typ uint8, d int) error {
	p, q := dir+"/"+name, to+"/"+name
	if typ == unix.DT_UNKNOWN {
		// The filesystem does not say: look (a search of dir).
		fi, err := c.r.Lstat(p)
		if err != nil {
			return fmt.Errorf("cannot check the links in %q: %w", dir, err)
		}
		typ = unix.DT_REG
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			typ = unix.DT_LNK
		case fi.IsDir():
			typ = unix.DT_DIR
		}
	}
	switch typ {
	case unix.DT_LNK:
		target, err := c.r.Readlink(p)
		if err != nil {
			return fmt.Errorf("cannot check the link %q: %w", p, err)
		}
		if err := linkShape(target, d); err != nil {
			return fmt.Errorf("the link %q -> %q, moved to %q: %w", p, target, q, err)
		}
	case unix.DT_DIR:
		return c.checkLinksIn(p, q, d+1)
	}
	return nil
}

// direntTypes calls fn with the name and kind (d_type: unix.DT_DIR,
// DT_LNK, DT_UNKNOWN where the filesystem does not record it, ...) of
// each entry of the directory f but "." and "..", read with getdents(2),
// and stops at fn's first error. os.File.ReadDir, on a file opened in an
// os.Root, fstatat(2)s every entry, which needs the directory's search
// permission; this needs only its read permission.
func direntTypes(f *os.File, fn func(name string, typ uint8) error) error {
	buf := make([]byte, 8192)
	for {
		var n int
		err := withFd(f, func(fd int) error {
			return ignoringEINTR(func() (err error) {
				n, err = unix.Getdents(fd, buf)
				return err
			})
		})
		if err != nil {
			return &fs.PathError{Op: "getdents", Path: f.Name(), Err: err}
		}
		if n <= 0 {
			return nil
		}
		// struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen
		// (2), d_type (1), then the name, NUL-terminated and padded.
		for b := buf[:n]; len(b) > 0; {
			const head = 19
			if len(b) < head {
				return &fs.PathError{Op: "getdents", Path: f.Name(), Err: fmt.Errorf("a record of %d bytes", len(b))}
			}
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < head || reclen > len(b) {
				return &fs.PathError{Op: "getdents", Path: f.Name(), Err: fmt.Errorf("a record length of %d in %d bytes", reclen, len(b))}
			}
			// d_ino is not looked at: old XFS and FUSE filesystems give
			// real entries an inode number of 0 (os.File.ReadDir keeps
			// them too).
			typ, name := b[18], b[head:reclen]
			b = b[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if err := fn(string(name), typ); err != nil {
				return err
			}
		}
	}
}

// linkLocks order the link checks with the operations they check
// (Symlink, Link, Rename, Mkdir), per part of the agent root: a call
// scoped to a user's directory waits only for calls in the same top-level
// directory (nested scopes share it), so that one user moving a large
// tree up, which reads all of it, does not hold up the others. A call on
// the whole root waits for all of them, and they for it; so does a call
// whose scope is not plainly where its path says (a link on the way, or a
// directory renamed since the scope was opened), which another path
// could name too.
type linkLocks struct {
	all   sync.RWMutex // a whole-root call holds it to write, a scoped one to read
	mu    sync.Mutex   // guards parts
	parts map[string]*sync.Mutex
}

// lock takes the lock for calls in scope c of the agent root ar and
// returns its release.
func (l *linkLocks) lock(ar *root, c *scope) (unlock func()) {
	if c.prefix == "" || !c.plainIn(ar) {
		l.all.Lock()
		return l.all.Unlock
	}
	// Lower case: on a case-folding directory Alice and alice are one
	// (two names sharing a lock only wait for each other).
	top, _, _ := strings.Cut(c.prefix, "/")
	top = strings.ToLower(top)
	l.all.RLock()
	l.mu.Lock()
	if l.parts == nil {
		l.parts = make(map[string]*sync.Mutex)
	}
	m := l.parts[top]
	if m == nil {
		m = new(sync.Mutex)
		l.parts[top] = m
	}
	l.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		l.all.RUnlock()
	}
}

// plainIn reports whether c's directory is where its prefix says in the
// agent root ar, through real directories only: no link on the way,
// and the directory c holds open is the one the path names now.
func (c *scope) plainIn(ar *root) bool {
	dir := strings.TrimSuffix(c.prefix, "/")
	for p := dir; p != "."; p = path.Dir(p) {
		fi, err := ar.Lstat(p)
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	named, err := ar.Stat(dir)
	if err != nil {
		return false
	}
	held, err := c.r.Stat(".")
	return err == nil && os.SameFile(named, held)
}
