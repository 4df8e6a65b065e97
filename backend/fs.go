// Package backend is upgate's filesystem layer: what the FTP and SFTP
// frontends write to, and what writes through gRPC to container agents.
//
// A backend filesystem is an afero.Fs. Capabilities beyond afero.Fs are
// small optional interfaces found by type assertion, like afero's own
// Lstater, Linker and LinkReader:
//
//   - afero.Lstater: SFTP LSTAT and listings that show links. Without it,
//     Stat is used.
//   - afero.Linker, afero.LinkReader: SFTP SYMLINK and READLINK. Without
//     them those requests are refused as unsupported.
//   - Hasher: FTP HASH/XMD5/XSHA256/XCRC and the SSH md5sum/sha256sum exec,
//     computed where the file lives. Without it the frontend refuses them.
//   - StatFSer: SFTP statvfs@openssh.com and FTP AVBL. Without it they are
//     refused.
//   - HardLinker: SFTP hardlink@openssh.com. Without it the request is
//     refused as unsupported.
//   - LinkTimesSetter: SFTP lsetstat@openssh.com's times (a link's own).
//     Without it lsetstat is refused as unsupported.
//   - DirSearcher: FTP CWD into a directory its user may not search
//     refused, as chdir(2) refuses it. Without it CWD asks only that the
//     path is a directory.
//   - ChangeChecker: View answers a rename or a link that meets the
//     session's upload in progress with the directory's refusal first, as
//     the kernel orders its checks. Without it View answers the upload's
//     own (ENOTDIR, EBUSY).
//
// Files may implement Upload (atomic uploads), TransferAborter,
// TimesSetter and ModeSetter; FileWrapper passes them through wrappers.
// View gives one session a POSIX view of its own uploads over any of
// these filesystems: every login gets one.
//
// Errors are os errors: frontends test them with errors.Is against
// os.ErrNotExist, os.ErrExist, os.ErrPermission, syscall.ENOTEMPTY,
// syscall.EXDEV and syscall.ENOSPC, and ErrUnavailable for an agent that
// cannot be reached.
package backend

import (
	"context"
	"errors"
	"hash"
	"os"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// ErrUnavailable is wrapped by errors from an agent that cannot be reached
// or did not answer in time.
var ErrUnavailable = errors.New("backend: agent unavailable")

// HashAlgorithm names a checksum a Hasher computes.
type HashAlgorithm string

// The algorithms every Hasher in this package supports.
const (
	SHA256 HashAlgorithm = "sha256"
	SHA1   HashAlgorithm = "sha1"
	MD5    HashAlgorithm = "md5"
	CRC32  HashAlgorithm = "crc32"
	SHA512 HashAlgorithm = "sha512"
)

// ParseHashAlgorithm accepts the names FTP's HASH command and the SSH
// checksum commands use ("SHA-256", "sha256", "MD5", "CRC32", ...).
func ParseHashAlgorithm(s string) (HashAlgorithm, bool) {
	s = strings.ToLower(strings.ReplaceAll(s, "-", ""))
	if s == "crc" {
		return CRC32, true
	}
	if _, ok := hashAlgorithms[HashAlgorithm(s)]; ok {
		return HashAlgorithm(s), true
	}
	return "", false
}

// New returns a new hash.Hash computing a, for a checksum computed where
// the data passes (a client's stdin, a filesystem in memory); false for
// an algorithm this package does not know.
func (a HashAlgorithm) New() (hash.Hash, bool) {
	wire, ok := hashAlgorithms[a] // grpcfs.go: the algorithms and their wire values
	if !ok {
		return nil, false
	}
	return wire.NewHash()
}

// Hasher is a filesystem that computes checksums next to the data, so a
// client's HASH or sha256sum does not pull the file through the gateway.
type Hasher interface {
	afero.Fs
	// Hash returns the checksum of length bytes of name from offset;
	// length 0 means to the end of the file.
	Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error)
}

// FSStats describes the filesystem holding a path, as statvfs(3) does.
type FSStats struct {
	BlockSize, FragmentSize             uint64
	Blocks, BlocksFree, BlocksAvailable uint64
	Files, FilesFree, NameMax           uint64
	// ReadOnly says nothing can be written there, as statvfs(3)'s
	// ST_RDONLY flag: a read-only mount (ReadOnly), or a directory above
	// the mount points (MountFs), which holds no capacity of its own.
	ReadOnly bool
}

// StatFSer is a filesystem that reports capacity, for SFTP's
// statvfs@openssh.com and FTP's AVBL.
type StatFSer interface {
	afero.Fs
	StatFS(ctx context.Context, name string) (FSStats, error)
}

// Flusher is a file that holds writes back to coalesce them: Flush returns
// once every write so far has landed where another open file or a path
// operation sees it (not fsync: durability is Sync's). View flushes a
// session's writers before each path operation, as POSIX promises a
// process that its writes are visible at once.
type Flusher interface {
	Flush() error
}

// ReadAheadDropper is a file that reads ahead: DropReadAhead forgets what
// it read ahead, so that its next read asks for the data again. View calls
// it when another handle of the session wrote at the file's path.
type ReadAheadDropper interface {
	DropReadAhead()
}

// DirSearcher is a filesystem that says, with the Stat that finds a
// directory, whether its user may search (enter) it, as chdir(2) asks: for
// FTP's CWD, whose reply vsftpd gives from chdir(2).
type DirSearcher interface {
	afero.Fs
	// StatSearch is Stat, failing with a PathError wrapping EACCES when
	// name is a directory its user may not search.
	StatSearch(name string) (os.FileInfo, error)
}

// ChangeChecker is a filesystem that says whether its user may change an
// entry of a directory (make, remove or replace it), as link(2), unlink(2)
// and rename(2) check before they look at the entries' kinds. View asks
// it where it answers for its upload in progress, which is not on disk
// yet.
type ChangeChecker interface {
	afero.Fs
	// MayChangeIn answers nil when the user may change the entry name in
	// the directory that holds it (the directory's write and search bits;
	// in a sticky directory, the owners of an existing entry and of the
	// directory), or why not, in a *fs.PathError: EACCES, EPERM, EROFS,
	// EBUSY (a mount point), or the directory's lookup error (ENOENT,
	// ENOTDIR). A filesystem that cannot tell for name answers an error
	// wrapping errors.ErrUnsupported.
	MayChangeIn(name string) error
}

// KindRemover is a filesystem that removes an entry of one kind in one
// step, as unlink(2) and rmdir(2) do: SFTP's REMOVE and RMDIR, FTP's DELE
// and RMD. Without it (see RemoveFile, RemoveDir) the kind is checked by
// an Lstat before Remove: a second call, whose answer may be stale by the
// Remove, and whose errors come in another order than the kernel's (a
// directory in a directory its user may not write: EISDIR where unlink(2)
// answers EACCES).
type KindRemover interface {
	afero.Fs
	// RemoveFile removes name, which must not be a directory (a
	// PathError wrapping EISDIR); a symbolic link is removed itself.
	RemoveFile(name string) error
	// RemoveDir removes name, which must be an empty directory (ENOTDIR,
	// ENOTEMPTY).
	RemoveDir(name string) error
}

// LinkTimesSetter is a filesystem that sets a symbolic link's own times
// (lutimes), for SFTP's lsetstat@openssh.com.
type LinkTimesSetter interface {
	afero.Fs
	// Lchtimes is Chtimes that does not follow a final symbolic link.
	Lchtimes(name string, atime, mtime time.Time) error
}

// HardLinker is a filesystem that makes hard links, for SFTP's
// hardlink@openssh.com.
type HardLinker interface {
	afero.Fs
	// Link makes newname another name of the file oldname (not a
	// directory), as link(2).
	Link(oldname, newname string) error
}

// TimesSetter is a file whose access and modification times can be set
// while it is open, an upload's included (SFTP's FSETSTAT before CLOSE,
// WebDAV's X-OC-Mtime), as futimens(2) sets them: at once, in order
// after the writes made through the file before, and a write or
// truncation after them moves the mtime again. An upload's commit keeps
// them.
type TimesSetter interface {
	SetTimes(atime, mtime time.Time) error
}

// HeldReopener is an upload that opens its data again, as Reopen does,
// for a handle that held the path's file open already: one that follows
// the newer upload that superseded its own (View.supersede). Its access
// was checked at its own open, so the file's mode, changed since, does
// not refuse it, as a descriptor stays usable after a chmod
// (TestSFTPRandom seed 4519). ReopenHeld finds it.
type HeldReopener interface {
	ReopenHeld(flag int) (afero.File, error)
}

// FreshStater is an open file whose Stat answers what its open found (a
// backend's directory: a listing needs no more) and that can ask again:
// FreshStat describes it as fstat(2) of its descriptor does now, whatever
// its path names since (SFTP's FSTAT of a directory opened with OPEN).
// Fstat finds it.
type FreshStater interface {
	FreshStat() (os.FileInfo, error)
}

// ModeSetter is a file whose mode can be changed while it is open.
type ModeSetter interface {
	Chmod(mode os.FileMode) error
}

// TransferAborter is a file that can be told its transfer failed, so that
// Close discards the upload instead of committing it. ftpserverlib and
// pkg/sftp both look for this method.
type TransferAborter interface {
	TransferError(err error)
}

// Upload is a file that may be an atomic upload: its writes are hidden by
// path (a Stat or a listing shows the old file, or none) until a clean
// Close commits them. The session that writes acts on its upload through
// these methods, which View uses to give it a POSIX view of its own work.
// A file that is not an upload in progress answers Pending false, and the
// other methods an error wrapping errors.ErrUnsupported.
type Upload interface {
	// Pending reports whether the file is an upload in progress that
	// Close will commit.
	Pending() bool
	// Unlink discards the upload now, as unlink(2) does an open file:
	// later writes go nowhere visible and Close commits nothing.
	Unlink() error
	// Move makes the upload commit as newname, a name of the filesystem
	// that opened it. A directory there fails with EISDIR.
	Move(newname string) error
	// Reopen opens the upload's data again, with os.OpenFile flags: to read
	// what was written so far, or to write into it in place. The new file
	// never commits; once the upload commits, it is the committed file.
	Reopen(flag int) (afero.File, error)
}
