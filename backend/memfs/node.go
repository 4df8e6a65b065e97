package memfs

import (
	"io/fs"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/upgate/upgate/backend"
)

// maxLinkHops bounds the symbolic links one path resolution follows, as
// the kernel's 40 does; more is ELOOP.
const maxLinkHops = 40

// node is a file, a directory or a symbolic link. A directory entry points
// at a node; hard links are several entries pointing at one node. All of a
// node's fields are guarded by FS.mu.
type node struct {
	mode         fs.FileMode // type bits and permissions
	mtime, atime time.Time
	uid, gid     uint32
	nlink        int              // directory entries naming it
	data         []byte           // a regular file's content
	target       string           // a symbolic link's content
	children     map[string]*node // a directory's entries
}

func (n *node) isDir() bool     { return n.mode.IsDir() }
func (n *node) isSymlink() bool { return n.mode&fs.ModeSymlink != 0 }

// info describes n under name, as a snapshot whose Sys is a
// *backend.Stat (as the gRPC filesystem's). FS.mu is held.
func (n *node) info(name string) fs.FileInfo {
	size := int64(len(n.data))
	switch {
	case n.isSymlink():
		size = int64(len(n.target))
	case n.isDir():
		size = 4096
	}
	return backend.NewFileInfo(name, size, n.mode, n.mtime,
		backend.Stat{UID: n.uid, GID: n.gid, Nlink: uint64(max(n.nlink, 0)), Atime: n.atime})
}

// sortedNames lists a directory's entries by name. FS.mu is held.
func (n *node) sortedNames() []string {
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// clean is the filesystem's absolute, clean form of a name; ".." cannot
// climb above "/".
func clean(name string) string { return path.Clean("/" + name) }

// where is the outcome of resolving a path: the directory that holds (or
// would hold) its last component, that component's name, and the node it
// names (nil when missing). For "/" dir is nil and base "".
type where struct {
	dir  *node
	path string // the resolved path, symbolic links followed
	base string
	n    *node
}

// walk resolves p (clean, absolute) as path resolution does: every
// component but the last must be a directory, or a symbolic link leading
// to one; follow says whether a final link is followed too. A missing last
// component is no error (w.n is nil); a missing directory on the way is
// ENOENT, a file there ENOTDIR, more than maxLinkHops links ELOOP. A link's
// absolute target starts from this filesystem's root. FS.mu is held.
func (m *FS) walk(op, p string, follow bool) (where, error) {
	stack := []step{{m.root, ""}} // the directories entered, root first
	todo := strings.Split(strings.TrimPrefix(p, "/"), "/")
	hops := 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		last := true
		for _, e := range todo {
			if e != "" && e != "." {
				last = false
				break
			}
		}
		dir := stack[len(stack)-1].n
		if !dir.isDir() {
			return where{}, &fs.PathError{Op: op, Path: p, Err: syscall.ENOTDIR}
		}
		child := dir.children[elem]
		switch {
		case child == nil && last:
			return where{dir: dir, path: stackPath(stack, elem), base: elem}, nil
		case child == nil:
			return where{}, &fs.PathError{Op: op, Path: p, Err: syscall.ENOENT}
		case child.isSymlink() && (follow || !last):
			if hops++; hops > maxLinkHops {
				return where{}, &fs.PathError{Op: op, Path: p, Err: syscall.ELOOP}
			}
			if path.IsAbs(child.target) {
				stack = stack[:1]
			}
			todo = append(strings.Split(child.target, "/"), todo...)
			continue
		case last:
			return where{dir: dir, path: stackPath(stack, elem), base: elem, n: child}, nil
		}
		stack = append(stack, step{child, elem})
	}
	// The path names a directory already entered: "/", or one that ".."
	// or a link's target came back to.
	top := stack[len(stack)-1]
	if len(stack) == 1 {
		return where{path: "/", n: top.n}, nil
	}
	return where{dir: stack[len(stack)-2].n, path: stackPath(stack[:len(stack)-1], top.name), base: top.name, n: top.n}, nil
}

// step is a directory a walk entered, and its name in its parent.
type step struct {
	n    *node
	name string
}

// stackPath joins the names of the directories entered and elem.
func stackPath(stack []step, elem string) string {
	parts := make([]string, 0, len(stack))
	for _, s := range stack[1:] {
		parts = append(parts, s.name)
	}
	return "/" + path.Join(append(parts, elem)...)
}
