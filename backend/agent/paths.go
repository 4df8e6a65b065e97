package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// clean checks a root-relative, slash-separated path from the wire and
// returns it in the form os.Root expects. The root itself is ".". It refuses
// NUL bytes, control characters and absolute paths (InvalidArgument) and
// any ".." component
// (PermissionDenied): the gateway resolves ".." before it sends a path, so
// one that arrives is an escape attempt. Symbolic links that lead outside are
// refused by os.Root itself (see toStatus).
func clean(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", status.Errorf(codes.InvalidArgument, "path %q contains a NUL byte", p)
	}
	// Control characters (newlines, escapes) in names break listings and
	// the tools that read them; nothing legitimate needs them.
	if strings.ContainsFunc(p, isControl) {
		return "", status.Errorf(codes.InvalidArgument, "path %q contains a control character", p)
	}
	if strings.HasPrefix(p, "/") {
		return "", status.Errorf(codes.InvalidArgument, "path %q is absolute; agent paths are relative to its root", p)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return "", status.Errorf(codes.PermissionDenied, "path %q escapes the agent root", p)
		}
	}
	if p == "" {
		return ".", nil
	}
	return path.Clean(p), nil
}

// isControl reports ASCII control characters and DEL, which names and link
// targets may not hold.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// maxLinks bounds the links one resolution follows, as the kernel's 40
// does.
const maxLinks = 40

// linkEnd marks, in confined's queue, where the expansion of a link ends:
// it is followed by the link's path. Names never hold NUL.
const linkEnd = "\x00"

// confined checks that target, a relative link target, resolved from dir
// (relative to the scope) through the links that exist now (in dir's path
// too), stays in the scope. A link it meets whose content is absolute
// leaves it.
//
// A link met again while its own expansion is under way is a cycle (l ->
// l, or m -> l with l -> l): the kernel and Go's filepath.EvalSymlinks
// never get through it (ELOOP), so a target that ends in it, or goes on
// below it, leads nowhere and is made. A ".." anywhere after it is
// refused: resolvers differ there (Python's os.path.realpath stops at a
// loop and cleans the rest as text; 3.13's remembers what a link of the
// cycle resolved to while another was expanding), and some of them land
// outside the scope. Otherwise more than maxLinks links is refused: a
// long chain that is no cycle leads somewhere for a program that follows
// more links than the kernel does (EvalSymlinks follows 255), and that
// somewhere is not checked.
//
// The target must also keep the shape of every link made through the
// agent (linkShape) at the depth of dir, once the links on dir's way are
// followed: one resolution of dir serves both.
func (c *scope) confined(dir, target string) error {
	stack, err := c.resolve(nil, strings.Split(dir, "/"))
	if err != nil {
		return err
	}
	if err := linkShape(target, len(stack)); err != nil {
		return err
	}
	_, err = c.resolve(stack, strings.Split(target, "/"))
	return err
}

// resolve follows the components of todo from stack (resolved components
// relative to the scope; nil for its root) through the links that exist
// now, as confined describes, and returns where they lead.
func (c *scope) resolve(stack, todo []string) ([]string, error) {
	stack = slices.Clone(stack)
	expanding := map[string]bool{} // links whose expansion is in todo
	links := 0
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch {
		case elem == "" || elem == ".":
			continue
		case strings.HasPrefix(elem, linkEnd):
			delete(expanding, elem[len(linkEnd):])
			continue
		case elem == "..":
			if len(stack) == 0 {
				return nil, errors.New("the target leaves the user's root")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := path.Join(append(stack, elem)...)
		if expanding[cur] {
			if slices.Contains(todo, "..") {
				return nil, fmt.Errorf("the target goes on with .. past a cycle of links at %q", cur)
			}
			stack = append(stack, elem)
			continue
		}
		fi, err := c.r.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// A missing name or a real file or directory: what follows
			// cannot climb out through a link here.
			stack = append(stack, elem)
			continue
		}
		if links++; links > maxLinks {
			return nil, errors.New("too many levels of symbolic links")
		}
		next, err := c.r.Readlink(cur)
		if err != nil {
			return nil, err
		}
		if path.IsAbs(next) {
			return nil, fmt.Errorf("the target passes through %q, a link to the absolute path %q", cur, next)
		}
		expanding[cur] = true
		todo = append(append(strings.Split(next, "/"), linkEnd+cur), todo...)
	}
	return stack, nil
}

// scope is the part of the agent root one call may use: the directory
// named by agentpb.ScopeMetadata, opened as an os.Root of its own, or the
// whole root. Its methods take cleaned agent paths, as they come from the
// wire.
type scope struct {
	r      *root
	prefix string // "" for the whole agent root, else "dir/"
	sub    bool   // r was opened for this call: Close closes it
}

// callScope returns the part of the root a v1 call's metadata allows
// (agentpb.ScopeMetadata). Close it when done.
func (s *Server) callScope(ctx context.Context) (*scope, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(agentpb.ScopeMetadata)
	if len(v) == 0 {
		return &scope{r: s.root}, nil
	}
	return s.openScope(v[0])
}

// openScope returns the part of the root below dir, a wire path; "" and
// "." are the whole root. Close it when done.
func (s *Server) openScope(dir string) (*scope, error) {
	if dir == "" {
		return &scope{r: s.root}, nil
	}
	dir, err := clean(dir)
	if err != nil {
		return nil, err
	}
	if dir == "." {
		return &scope{r: s.root}, nil
	}
	r, err := s.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &scope{r: r, prefix: dir + "/", sub: true}, nil
}

// contains reports whether the cleaned agent path p lies in the scope.
func (c *scope) contains(p string) bool {
	return c.prefix == "" || p+"/" == c.prefix || strings.HasPrefix(p, c.prefix)
}

// in is p relative to the scope.
func (c *scope) in(p string) string {
	if c.prefix == "" {
		return p
	}
	if p+"/" == c.prefix {
		return "."
	}
	return strings.TrimPrefix(p, c.prefix)
}

func (c *scope) Close() error {
	if c.sub {
		return c.r.Close()
	}
	return nil
}

func (c *scope) Stat(p string) (fs.FileInfo, error)  { return c.r.Stat(c.in(p)) }
func (c *scope) Lstat(p string) (fs.FileInfo, error) { return c.r.Lstat(c.in(p)) }
func (c *scope) Open(p string) (*os.File, error)     { return c.OpenFile(p, os.O_RDONLY, 0) }

// sameFile reports whether a and b name one file that is not a
// directory: two hard links of it (or one name twice).
func (c *scope) sameFile(a, b string) bool {
	fa, err := c.Lstat(a)
	if err != nil || fa.IsDir() {
		return false
	}
	fb, err := c.Lstat(b)
	return err == nil && os.SameFile(fa, fb)
}

// OpenFile opens p as open(2) would, except that it never waits on, nor
// opens, a FIFO, socket or device: a FIFO opened for reading blocks until
// a writer comes, and with it the session that asked, for good; and
// opening one only to refuse it would let a writer waiting on it through,
// to die of SIGPIPE at its next write. What p names is looked at first
// and refused (errNotRegular) unless it is a regular file, a directory or
// nothing yet; a regular file opens as before (a lease is waited for),
// anything else non-blocking, and what the open finds is checked again,
// in case it changed in between.
func (c *scope) OpenFile(p string, flag int, perm fs.FileMode) (*os.File, error) {
	f, _, err := c.openStat(p, flag, perm)
	return f, err
}

// openStat is OpenFile that also returns the open file's state, which it
// has looked at anyway.
func (c *scope) openStat(p string, flag int, perm fs.FileMode) (*os.File, fs.FileInfo, error) {
	rel := c.in(p)
	regular := false
	switch fi, err := c.r.Stat(rel); {
	case err == nil && fi.Mode().IsRegular():
		regular = true
	case err == nil && !fi.IsDir():
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: errNotRegular}
	}
	nonblock := !regular && flag&unix.O_NONBLOCK == 0
	if nonblock {
		flag |= unix.O_NONBLOCK
	}
	f, err := c.r.OpenFile(rel, flag, perm)
	if err != nil {
		if errors.Is(err, unix.ENXIO) {
			// A FIFO, made since the look, opened for writing with no
			// reader.
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: errNotRegular}
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	switch {
	case fi.IsDir():
	case fi.Mode().IsRegular():
		if nonblock {
			if err := setBlocking(f); err != nil {
				f.Close()
				return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
			}
		}
	default:
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: errNotRegular}
	}
	return f, fi, nil
}

// setBlocking clears O_NONBLOCK on f's descriptor.
func setBlocking(f *os.File) error {
	return withFd(f, func(fd int) error { return unix.SetNonblock(fd, false) })
}

// openDirUnread opens the directory rel of r for the agent's own reading
// (a sweep of stale temp files, a check of the links a move carries),
// which no client asked for: with O_NOATIME where the agent's user may
// (it owns the directory, or holds CAP_FOWNER), so that the directory's
// atime moves for the clients' listings only, as on sftp-server, which
// reads no directory unasked (relatime moves an atime that is not after
// the mtime: TestSFTPRandom seed 3119). O_DIRECTORY opens nothing else,
// a FIFO included.
func openDirUnread(r *root, rel string) (*os.File, error) {
	f, err := r.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOATIME, 0)
	if errors.Is(err, syscall.EPERM) {
		f, err = r.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY, 0)
	}
	return f, err
}

// withFd runs fn on f's descriptor, which f keeps open meanwhile (a Close
// racing it waits), and returns fn's error.
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	cerr := rc.Control(func(fd uintptr) { err = fn(int(fd)) })
	return errors.Join(err, cerr)
}

// errNotRegular refuses to open a FIFO, socket or device (scope.OpenFile):
// SFTP clients get SSH_FX_OP_UNSUPPORTED, FTP clients 550 "... operation
// not supported".
var errNotRegular = fmt.Errorf("%w: not a regular file or directory", syscall.ENOTSUP)

func (c *scope) Mkdir(p string, perm fs.FileMode) error    { return c.r.Mkdir(c.in(p), perm) }
func (c *scope) MkdirAll(p string, perm fs.FileMode) error { return c.r.MkdirAll(c.in(p), perm) }
func (c *scope) Remove(p string) error                     { return c.r.Remove(c.in(p)) }
func (c *scope) RemoveAll(p string) error                  { return c.r.RemoveAll(c.in(p)) }
func (c *scope) Rename(from, to string) error              { return c.rename(c.in(from), c.in(to)) }
func (c *scope) Link(from, to string) error                { return c.r.Link(c.in(from), c.in(to)) }
func (c *scope) Chmod(p string, mode fs.FileMode) error    { return c.r.Chmod(c.in(p), mode) }
func (c *scope) Chown(p string, uid, gid int) error        { return c.r.Chown(c.in(p), uid, gid) }
func (c *scope) Chtimes(p string, atime, mtime time.Time) error {
	return c.r.Chtimes(c.in(p), atime, mtime)
}
func (c *scope) Symlink(target, p string) error    { return c.r.Symlink(target, c.in(p)) }
func (c *scope) Readlink(p string) (string, error) { return c.r.Readlink(c.in(p)) }

// removeKind removes p in one step, as unlink(2) does anything but a
// directory (EISDIR) and rmdir(2) an empty directory (dir; ENOTDIR,
// ENOTEMPTY), with the kernel's errors in its order: a directory its
// user may not write answers EACCES before either. (os.Root's Remove
// tries both calls, so it would remove an empty directory put where a
// file was looked up.)
func (c *scope) removeKind(p string, dir bool) error {
	op, flag := "remove", 0
	if dir {
		op, flag = "rmdir", unix.AT_REMOVEDIR
	}
	err := c.inParent(p, func(dfd int, base string) error {
		return ignoringEINTR(func() error { return unix.Unlinkat(dfd, base, flag) })
	})
	if err != nil {
		return &fs.PathError{Op: op, Path: p, Err: err}
	}
	return nil
}

// mayChangeIn reports whether the agent's user may change the entry p in
// the directory that holds it, as unlink(2), rmdir(2) and rename(2) check
// before they look at the entry's kind: the directory's write and search
// bits (EACCES; EROFS on a read-only mount), then, in a sticky directory
// (/tmp's 1777), that the user owns the entry or the directory, unless
// the entry does not exist (EPERM; root passes). nil when it may.
//
// faccessat(2) without AT_EACCESS asks for the real ids, which are the
// agent's effective ones: with that flag, x/sys emulates the call where a
// seccomp profile refuses faccessat2, and the emulation knows neither
// ACLs nor read-only mounts.
func (c *scope) mayChangeIn(p string) error {
	return c.inParent(p, func(dfd int, base string) error {
		if err := ignoringEINTR(func() error { return unix.Faccessat(dfd, ".", unix.W_OK|unix.X_OK, 0) }); err != nil {
			return err
		}
		return stickyAllows(dfd, base)
	})
}

// stickyAllows is the sticky directory's check of unlink(2) and rename(2)
// (the kernel's check_sticky) for the entry name of the directory dfd:
// EPERM where the directory is sticky and the agent's user, not root,
// owns neither it nor an existing entry.
func stickyAllows(dfd int, name string) error {
	var dir unix.Stat_t
	if err := ignoringEINTR(func() error { return unix.Fstat(dfd, &dir) }); err != nil {
		return err
	}
	euid := uint32(os.Geteuid())
	if dir.Mode&unix.S_ISVTX == 0 || euid == 0 || dir.Uid == euid {
		return nil
	}
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil // nothing of another's to remove
	case err != nil:
		return err
	case st.Uid != euid:
		return unix.EPERM
	}
	return nil
}

// inParent runs fn on the directory that holds p, opened O_PATH
// (parentDir), and p's last component there. A failure to open the
// directory is returned unwrapped, as fn's errors are, for the caller to
// name its operation.
func (c *scope) inParent(p string, fn func(dfd int, base string) error) error {
	d, dfd, base, err := c.parentDir(p)
	if err != nil {
		return unwrapPathError(err)
	}
	defer d.Close()
	return fn(dfd, base)
}

// parentDir opens the directory that holds p (a cleaned agent path in the
// scope) through the root, so that no link on the way leads out, for *at
// system calls on base, p's last component in the scope: one resolution
// serves several calls where each os.Root method resolves the path again
// (an upload's open and commit, issue 15). For the scope's root itself d
// is that root and base ".", which names it, never a directory inside it.
// The directory is opened O_PATH (openDirIn), so that, as for open(2) of
// a path, only its search bit is asked: a directory its user may write
// and search but not read (0300, or 0311 and 0000 left so by its owner
// since an upload began) does not refuse the *at calls at the open.
// The caller closes d; fd is d's descriptor until then.
func (c *scope) parentDir(p string) (d *os.File, fd int, base string, err error) {
	rel := c.in(p)
	d, err = openDirIn(c.r, path.Dir(rel))
	if err != nil {
		return nil, -1, "", err
	}
	return d, int(d.Fd()), path.Base(rel), nil
}

// openDirIn opens rel in r as a directory for *at calls: O_PATH, which
// asks no permission of the directory itself, and O_DIRECTORY, so that a
// FIFO where a directory should be fails at once (ENOTDIR) instead of
// waiting for a writer.
func openDirIn(r *root, rel string) (*os.File, error) {
	return r.OpenFile(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// name is the host path of p, as os names the files it opens through the
// root.
func (c *scope) name(p string) string { return path.Join(c.r.Name(), c.in(p)) }

// mkdirSticky makes the directory p with perm, which holds the sticky
// bit, as mkdir(2) makes it (the umask applies, the bit stays, and the
// setgid bit of a parent that has it is inherited): os.Root's Mkdir takes
// permissions alone, and a chmod after it would clear the inherited bit.
func (c *scope) mkdirSticky(p string, perm fs.FileMode) error {
	d, dfd, base, err := c.parentDir(p)
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: p, Err: unwrapPathError(err)}
	}
	defer d.Close()
	err = ignoringEINTR(func() error { return unix.Mkdirat(dfd, base, unixPerm(perm)) })
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: p, Err: err}
	}
	return nil
}

// chmodDir sets mode, which holds the setgid bit, on the directory p, a
// final link followed within the scope as chmod(2) follows it; anything
// but a directory is refused (EPERM), so that no file is ever made setgid.
// The directory is opened O_PATH|O_DIRECTORY (the kernel checks the type
// at the open) and changed through that descriptor, so that what was
// checked is what changes: a directory swapped for a file in between does
// not get the bit.
func (c *scope) chmodDir(p string, mode fs.FileMode) error {
	d, err := c.openDirPath(p)
	if errors.Is(err, syscall.ENOTDIR) {
		if _, serr := c.Stat(p); serr == nil {
			err = &fs.PathError{Op: "chmod", Path: p, Err: fmt.Errorf("%w: the setgid bit is set on directories only", syscall.EPERM)}
		}
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := fchmodDir(int(d.Fd()), unixPerm(mode)|unix.S_ISGID); err != nil {
		return &fs.PathError{Op: "chmod", Path: p, Err: err}
	}
	return nil
}

// fchmodDir sets the mode m of the directory open (O_PATH) as fd: by
// fchmodat2 with AT_EMPTY_PATH (Linux 6.6), else, on an older kernel or
// under a seccomp profile that refuses the call, by fchmod(2) of the
// directory opened again for reading (fchmodReopened). Never through
// /proc, which need not be procfs where the agent runs.
func fchmodDir(fd int, m uint32) error {
	return fchmodHeld(fd, m, func() error { return fchmodReopened(fd, m) })
}

// fchmodHeld sets the mode m of what fd (O_PATH) holds by fchmodat2 with
// AT_EMPTY_PATH, or, where the kernel lacks it or a seccomp profile
// refuses it, by reopened, which sets it through a descriptor opened
// again for reading.
func fchmodHeld(fd int, m uint32, reopened func() error) error {
	err := ignoringEINTR(func() error { return unix.Fchmodat(fd, "", m, unix.AT_EMPTY_PATH) })
	switch err {
	case unix.EOPNOTSUPP, unix.ENOSYS, unix.EPERM, unix.EINVAL:
		// EPERM is also a real refusal (not the owner): fchmod(2) then
		// gives it again.
		return reopened()
	}
	return err
}

// fchmodReopened opens the directory fd (O_PATH) again for reading, which
// needs read permission on it, and sets its mode m with fchmod(2).
func fchmodReopened(fd int, m uint32) error {
	var rfd int
	err := ignoringEINTR(func() (err error) {
		rfd, err = unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	return ignoringEINTR(func() error { return unix.Fchmod(rfd, m) })
}

// openDirPath opens the directory p O_PATH|O_DIRECTORY through the root,
// a final link followed within the scope: no permission of its own is
// needed, and anything but a directory fails at the open (ENOTDIR), so
// that what the descriptor names is a directory, whatever is swapped in
// at p afterwards.
func (c *scope) openDirPath(p string) (*os.File, error) { return openDirIn(c.r, c.in(p)) }

// statSearch is Stat of p (a final link followed) that, when p is a
// directory, also asks whether the agent's user may search (enter) it, as
// chdir(2) asks: "." is looked up in the directory opened O_PATH, which
// needs search permission on it, for the effective ids and their
// capabilities as chdir(2) has them (faccessat2 would ask the same, but
// some seccomp profiles still refuse it). One resolution of p serves the
// stat and the check; anything but a directory is a plain Stat.
func (c *scope) statSearch(p string) (fs.FileInfo, error) {
	d, err := c.openDirPath(p)
	if errors.Is(err, syscall.ENOTDIR) {
		return c.Stat(p)
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	err = ignoringEINTR(func() error { return unix.Fstatat(int(d.Fd()), ".", &st, 0) })
	if err != nil {
		return nil, &fs.PathError{Op: "chdir", Path: p, Err: err}
	}
	return fi, nil
}

// createExcl creates p (O_CREAT|O_EXCL, never through a link) in the
// directory dirfd that holds it: a raw openat, so that os does not try the
// regular file on its poller (five system calls it refuses).
func (c *scope) createExcl(dirfd int, p string, perm fs.FileMode) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, path.Base(p), unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, unixPerm(perm))
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), c.name(p)), nil
}

// unixPerm is the open(2) mode of perm: its permissions and, from
// fs.ModeSticky, S_ISVTX.
func unixPerm(perm fs.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&fs.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// ignoringEINTR retries a system call that a signal interrupted.
func ignoringEINTR(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// replace renames tmp over p as the commit of an atomic upload, whose
// temp file lies next to its target (tempPath, handle.move and
// movedUploads keep it so): one resolution of the directory for the
// rename and for holding the file it replaces open (O_PATH, never through
// a link), which replace returns, nil when there was none (see
// handle.replaced).
func (c *scope) replace(tmp, p string, owner uint32, log *slog.Logger) (replaced *os.File, err error) {
	err = c.inParent(p, func(dfd int, base string) error {
		if fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			replaced = os.NewFile(uintptr(fd), c.name(p))
		}
		return lendOwnDir(dfd, c.in(path.Dir(p)), owner, log, func() error { return unix.Renameat(dfd, path.Base(tmp), dfd, base) })
	})
	if err != nil {
		if replaced != nil {
			_ = replaced.Close()
		}
		return nil, &os.LinkError{Op: "rename", Old: c.in(tmp), New: c.in(p), Err: err}
	}
	return replaced, nil
}

// linkTemp links an upload's temp file tmp to p, its directory's other
// name, as the commit of an exclusive create (link fails where a name
// appeared since the open, where rename would replace it); see
// lendOwnDir for owner.
func (c *scope) linkTemp(tmp, p string, owner uint32, log *slog.Logger) error {
	err := c.inParent(p, func(dfd int, base string) error {
		return lendOwnDir(dfd, c.in(path.Dir(p)), owner, log, func() error { return unix.Linkat(dfd, path.Base(tmp), dfd, base, 0) })
	})
	if err != nil {
		return &os.LinkError{Op: "link", Old: c.in(tmp), New: c.in(p), Err: err}
	}
	return nil
}

// removeTemp removes an upload's temp file tmp; see lendOwnDir for owner.
func (c *scope) removeTemp(tmp string, owner uint32, log *slog.Logger) error {
	err := c.inParent(tmp, func(dfd int, base string) error {
		return lendOwnDir(dfd, c.in(path.Dir(tmp)), owner, log, func() error { return unix.Unlinkat(dfd, base, 0) })
	})
	if err != nil {
		return &fs.PathError{Op: "remove", Path: c.in(tmp), Err: err}
	}
	return nil
}

// lendOwnDir runs change, a change of the entries of the directory dfd
// (open O_PATH or for reading; dir names it in the log) that ends an
// upload begun in it (its commit, or its temp file's removal), or begins
// the session's save again of its upload in progress there
// (createOwnRedo). s.mu is held, so that no two lends to a directory
// overlap. If the directory refuses it (EACCES) because its
// owner, the agent's user (owner), has taken away its own write or search
// bit since the upload began (a session's SETSTAT of the directory, `chmod
// a-w` in the container), change runs once more with the missing bits of
// the two lent to the directory, and they are taken back at once; a chmod
// made meanwhile stays. The upload's file exists since its open for the
// client, as sftp-server's would: the commit completes that open, which
// the directory allowed, and could be made by the same user's own chmod.
// A close failed there, and the temp file stayed in the directory
// (TestSFTPRandom seed 860). Nothing is lent to a directory of another
// user, nor to a setgid one whose group the agent's user is not in
// (chmod(2) would clear its setgid bit): the change fails. A failure to
// take the bits back is logged, not returned: the change was made.
func lendOwnDir(dfd int, dir string, owner uint32, log *slog.Logger, change func() error) error {
	err := ignoringEINTR(change)
	if err != unix.EACCES {
		return err
	}
	var st unix.Stat_t
	if unix.Fstat(dfd, &st) != nil || st.Uid != owner || st.Mode&0o300 == 0o300 ||
		(st.Mode&unix.S_ISGID != 0 && !inGroup(st.Gid)) {
		return err
	}
	lent := 0o300 &^ (st.Mode & 0o300)
	if fchmodDir(dfd, st.Mode&0o7777|lent) != nil {
		return err
	}
	err = ignoringEINTR(change)
	rerr := unix.Fstat(dfd, &st)
	if rerr == nil {
		rerr = fchmodDir(dfd, st.Mode&0o7777&^lent)
	}
	if rerr != nil {
		log.Error("take back the write and search bits lent to a directory for an upload's commit",
			"dir", dir, "lent", fmt.Sprintf("%#o", lent), "err", rerr)
	}
	return err
}

// inGroup reports whether gid is the agent's effective group or one of
// its supplementary groups.
func inGroup(gid uint32) bool {
	if uint32(os.Getegid()) == gid {
		return true
	}
	groups, err := os.Getgroups()
	if err != nil {
		return false
	}
	for _, g := range groups {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}

// rename is rename(2) inside the root: renameat between the two parent
// directories, each opened through the root (so no link on the way leads
// out), on their last components, which renameat never follows. Unlike
// os.Root.Rename it replaces an empty directory, as POSIX says, and
// answers with the kernel's own errno (EISDIR, ENOTDIR, ENOTEMPTY,
// EINVAL for a directory into itself).
func (c *scope) rename(from, to string) error {
	// Errors name the path asked for (os.Root's name the parent).
	od, err := openDirIn(c.r, path.Dir(from))
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: unwrapPathError(err)}
	}
	defer od.Close()
	nd := od // an upload's commit renames within one directory: open it once
	if path.Dir(to) != path.Dir(from) {
		if nd, err = openDirIn(c.r, path.Dir(to)); err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: unwrapPathError(err)}
		}
		defer nd.Close()
	}
	oc, err := od.SyscallConn()
	if err != nil {
		return err
	}
	nc, err := nd.SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	cerr := oc.Control(func(ofd uintptr) {
		if err := nc.Control(func(nfd uintptr) {
			rerr = unix.Renameat(int(ofd), path.Base(from), int(nfd), path.Base(to))
		}); err != nil {
			rerr = err
		}
	})
	if cerr != nil {
		return cerr
	}
	if rerr != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: rerr}
	}
	return nil
}

// Lchtimes sets p's own times, a symbolic link's included: utimensat with
// AT_SYMLINK_NOFOLLOW on the last component, in its parent opened through
// the root. A zero time is left as it is.
func (c *scope) Lchtimes(p string, atime, mtime time.Time) error {
	rel := c.in(p)
	d, err := openDirIn(c.r, path.Dir(rel))
	if err != nil {
		return &fs.PathError{Op: "lchtimes", Path: p, Err: unwrapPathError(err)}
	}
	defer d.Close()
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if !atime.IsZero() {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if !mtime.IsZero() {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var uerr error
	if err := rc.Control(func(fd uintptr) {
		uerr = unix.UtimesNanoAt(int(fd), path.Base(rel), ts, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return err
	}
	if uerr != nil {
		return &fs.PathError{Op: "lchtimes", Path: p, Err: uerr}
	}
	return nil
}
