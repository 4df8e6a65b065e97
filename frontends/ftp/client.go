package ftp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
)

// clientDriver is ftpserverlib's ClientDriver for one logged-in client:
// the user's filesystem plus the extensions FTP clients use.
type clientDriver struct {
	afero.Fs
	c         *client
	log       *slog.Logger
	checkAllo bool // Config.CheckAlloSize
}

var (
	_ ftpserver.ClientDriver                        = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionDirLister      = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionRemoveDir      = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionHasher         = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionAvailableSpace = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionSite           = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionSymlink        = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionRealPath       = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionStatSearch     = (*clientDriver)(nil)
	_ ftpserver.ClientDriverExtensionAllocate       = (*clientDriver)(nil)
	_ afero.Lstater                                 = (*clientDriver)(nil)
)

// OpenFile opens a file for a transfer (STOR, APPE, RETR) or a listing.
func (d *clientDriver) OpenFile(name string, flag int, perm os.FileMode) (f afero.File, err error) {
	defer recovered(d.c, "open", &err)
	op := "RETR "
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		op = "STOR "
		// ftpserverlib asks for 0777; new files get 0666 less the
		// agent's umask, as vsftpd's file_open_mode does.
		perm = 0o666
	}
	d.c.sess.SetOp(op + name)
	file, err := d.Fs.OpenFile(name, flag, perm)
	if err == nil && flag&(os.O_WRONLY|os.O_RDWR) == 0 && backend.IsDir(file) {
		// RETR of a directory: 550 before any 150, as vsftpd answers.
		file.Close()
		err = &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	if err != nil {
		d.c.sess.SetOp("idle")
		d.log.Info("open failed", "path", name, "err", err)
		return nil, err
	}
	tf := &transferFile{FileWrapper: backend.FileWrapper{File: file}, d: d, upload: flag&(os.O_WRONLY|os.O_RDWR) != 0}
	if allo := d.c.takeAllo(); d.checkAllo && flag&os.O_WRONLY != 0 && flag&os.O_APPEND == 0 {
		tf.announced = allo // STOR: the size ALLO announced, if any
	}
	return tf, nil
}

// AllocateSpace answers ALLO: the size is remembered for the next STOR,
// which then commits only if exactly that much arrived (see
// transferFile.Close). No space is reserved.
func (d *clientDriver) AllocateSpace(size int) error {
	if size < 0 {
		return &fs.PathError{Op: "allo", Path: d.c.cc.Path(), Err: syscall.EINVAL}
	}
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	d.c.allo = int64(size)
	return nil
}

// Open implements afero.Fs through OpenFile.
func (d *clientDriver) Open(name string) (afero.File, error) { return d.OpenFile(name, os.O_RDONLY, 0) }

// Remove is DELE: files only, as unlink(2) (RMD is RemoveDir).
func (d *clientDriver) Remove(name string) (err error) {
	defer recovered(d.c, "remove", &err)
	return backend.RemoveFile(d.Fs, name)
}

// RemoveDir is RMD: empty directories only, as rmdir(2).
func (d *clientDriver) RemoveDir(name string) (err error) {
	defer recovered(d.c, "rmdir", &err)
	return backend.RemoveDir(d.Fs, name)
}

// OpenDir opens a directory for LIST, NLST, MLSD and STAT, which read it
// page by page (the ftpserverlib fork's ClientDriverExtensionDirLister):
// every entry, dotfiles included, never "." or "..". A symbolic link is
// listed as a link, as vsftpd lists it (LIST `lrwxrwxrwx ... name ->
// target`, MLSD `Type=OS.unix=symlink`): shown as what it points to, a
// link to a directory made `lftp mirror -R --delete` delete through it.
// Entries come sorted by name, as vsftpd lists them, unless the directory
// holds more than listSortMax: then they come in directory order, as
// OpenSSH's sftp-server lists every directory, so that a listing's memory
// stays bounded.
func (d *clientDriver) OpenDir(name string) (f afero.File, err error) {
	defer recovered(d.c, "list", &err)
	dir, err := d.Fs.Open(name)
	if err != nil {
		return nil, err
	}
	if !backend.IsDir(dir) {
		dir.Close()
		return nil, &fs.PathError{Op: "list", Path: name, Err: syscall.ENOTDIR}
	}
	return &listDir{FileWrapper: backend.FileWrapper{File: dir}, d: d, name: name}, nil
}

// listSortMax is the most entries a listing sorts; a larger directory is
// listed in directory order (see OpenDir).
const listSortMax = 10_000

// listDir is a directory as FTP listings read it (see OpenDir).
type listDir struct {
	backend.FileWrapper
	d      *clientDriver
	name   string
	buf    []os.FileInfo // read, not yet returned
	ended  bool          // the directory has no more entries to read
	primed bool          // the first listSortMax entries have been read
}

// Readdir returns the next count entries (count > 0), as listings ask.
func (l *listDir) Readdir(count int) (fis []os.FileInfo, err error) {
	defer recovered(l.d.c, "list", &err)
	if !l.primed {
		l.primed = true
		for !l.ended && len(l.buf) <= listSortMax {
			if err := l.read(); err != nil {
				return nil, err
			}
		}
		if l.ended {
			sort.Slice(l.buf, func(i, j int) bool { return l.buf[i].Name() < l.buf[j].Name() })
		}
	}
	for !l.ended && (count <= 0 || len(l.buf) < count) {
		if err := l.read(); err != nil {
			return nil, err
		}
	}
	n := len(l.buf)
	if count > 0 {
		if n == 0 {
			return nil, io.EOF
		}
		n = min(n, count)
	}
	fis, l.buf = l.buf[:n:n], l.buf[n:]
	return fis, nil
}

// read appends the next page of the directory to buf, as listings show
// entries.
func (l *listDir) read() error {
	page, err := l.File.Readdir(512)
	for _, fi := range page {
		switch fi.Name() {
		case ".", "..":
			continue
		}
		l.buf = append(l.buf, l.d.listed(path.Join(l.name, fi.Name()), fi))
	}
	if errors.Is(err, io.EOF) || err == nil && len(page) < 512 {
		l.ended = true
		return nil
	}
	return err
}

// Mkdir is MKD.
func (d *clientDriver) Mkdir(name string, perm os.FileMode) (err error) {
	defer recovered(d.c, "mkdir", &err)
	return d.Fs.Mkdir(name, perm)
}

// MkdirAll is SITE MKDIR.
func (d *clientDriver) MkdirAll(name string, perm os.FileMode) (err error) {
	defer recovered(d.c, "mkdir", &err)
	return d.Fs.MkdirAll(name, perm)
}

// RemoveAll is not used by ftpserverlib's commands; guarded all the same.
func (d *clientDriver) RemoveAll(name string) (err error) {
	defer recovered(d.c, "remove", &err)
	return d.Fs.RemoveAll(name)
}

// Rename is RNFR/RNTO.
func (d *clientDriver) Rename(oldname, newname string) (err error) {
	defer recovered(d.c, "rename", &err)
	return d.Fs.Rename(oldname, newname)
}

// Chmod is SITE CHMOD.
func (d *clientDriver) Chmod(name string, mode os.FileMode) (err error) {
	defer recovered(d.c, "chmod", &err)
	return d.Fs.Chmod(name, mode)
}

// Chown is SITE CHOWN's (refused before it gets here, see Site).
func (d *clientDriver) Chown(name string, uid, gid int) (err error) {
	defer recovered(d.c, "chown", &err)
	return d.Fs.Chown(name, uid, gid)
}

// Chtimes is MFMT, MDTM with a time and SITE UTIME.
func (d *clientDriver) Chtimes(name string, atime, mtime time.Time) (err error) {
	defer recovered(d.c, "chtimes", &err)
	return d.Fs.Chtimes(name, atime, mtime)
}

// Stat implements afero.Fs with modification times in UTC (see listInfo).
// A relative name is resolved against the working directory: ftpserverlib
// passes absolute paths except in HASH/XMD5/XSHA*/XCRC, which stat the
// client's argument as given (handleGenericHash) and so failed after a CWD.
func (d *clientDriver) Stat(name string) (_ os.FileInfo, err error) {
	defer recovered(d.c, "stat", &err)
	fi, err := d.Fs.Stat(d.c.absPath(name))
	if err != nil {
		return nil, err
	}
	return listInfo{FileInfo: fi}, nil
}

// StatSearch is CWD's Stat (ftpserverlib.ClientDriverExtensionStatSearch):
// a directory its user may not search is refused, as vsftpd's chdir(2)
// refuses it, in the same agent request as the Stat.
func (d *clientDriver) StatSearch(name string) (_ os.FileInfo, err error) {
	defer recovered(d.c, "stat", &err)
	fi, err := backend.StatSearch(d.Fs, d.c.absPath(name))
	if err != nil {
		return nil, err
	}
	return listInfo{FileInfo: fi}, nil
}

// LstatIfPossible implements afero.Lstater for listings of a single path:
// a link is listed as the link, as vsftpd lists it.
func (d *clientDriver) LstatIfPossible(name string) (_ os.FileInfo, _ bool, err error) {
	defer recovered(d.c, "lstat", &err)
	p := d.c.absPath(name)
	fi, err := backend.Lstat(d.Fs, p)
	if err != nil {
		return nil, true, err
	}
	return d.listed(p, fi), true, nil
}

// listed is fi, the entry at p, as a listing shows it; a link's target is
// read (as vsftpd's LIST reads it: the link's atime moves, as there).
func (d *clientDriver) listed(p string, fi os.FileInfo) os.FileInfo {
	li := listInfo{FileInfo: fi}
	if fi.Mode()&os.ModeSymlink != 0 {
		li.target, _ = backend.Readlink(d.Fs, p)
	}
	return li
}

// RealPath resolves the links on the way, so that CWD through a link sets
// the directory it leads to, as vsftpd's getcwd shows it.
func (d *clientDriver) RealPath(name string) (_ string, err error) {
	defer recovered(d.c, "realpath", &err)
	return backend.RealPath(d.Fs, d.c.absPath(name))
}

// listInfo is a FileInfo as FTP listings show it. Its ModTime is in UTC:
// ftpserverlib formats LIST and STAT dates in the FileInfo's location, the
// backend's times are in time.Local, and clients (lftp's ftp:timezone,
// jlaffaye/ftp) read LIST dates as GMT, so on a gateway whose TZ is not
// UTC --only-newer would compare against shifted times. It gives the
// listing the link count, owner and link target the backend knows
// (ftpserverlib.FileInfoStat and FileInfoLinkTarget).
type listInfo struct {
	os.FileInfo
	target string // a link's content
}

var (
	_ ftpserver.FileInfoStat       = listInfo{}
	_ ftpserver.FileInfoLinkTarget = listInfo{}
)

func (l listInfo) ModTime() time.Time { return l.FileInfo.ModTime().UTC() }

func (l listInfo) stat() backend.Stat {
	if st, ok := l.Sys().(*backend.Stat); ok {
		return *st
	}
	return backend.Stat{Nlink: 1}
}

func (l listInfo) Nlink() uint64 { return max(l.stat().Nlink, 1) }

// Uid implements ftpserverlib's FileInfoStat, which names it so.
//
//lint:ignore ST1003 the method name is the library interface's
func (l listInfo) Uid() uint32 { return l.stat().UID }

// Gid implements ftpserverlib's FileInfoStat, which names it so.
//
//lint:ignore ST1003 the method name is the library interface's
func (l listInfo) Gid() uint32 { return l.stat().GID }

func (l listInfo) LinkTarget() string { return l.target }

// ftpHashes maps the algorithms of FTP's HASH and X* commands to the
// backend's.
var ftpHashes = map[ftpserver.HASHAlgo]backend.HashAlgorithm{
	ftpserver.HASHAlgoCRC32:  backend.CRC32,
	ftpserver.HASHAlgoMD5:    backend.MD5,
	ftpserver.HASHAlgoSHA1:   backend.SHA1,
	ftpserver.HASHAlgoSHA256: backend.SHA256,
	ftpserver.HASHAlgoSHA512: backend.SHA512,
}

// ComputeHash answers HASH, XCRC, XMD5, XSHA1, XSHA256 and XSHA512 from
// the agent, which reads the file where it lives.
func (d *clientDriver) ComputeHash(name string, algo ftpserver.HASHAlgo, start, end int64) (sum string, err error) {
	defer recovered(d.c, "hash", &err)
	a, ok := ftpHashes[algo]
	if !ok {
		return "", fmt.Errorf("unsupported hash algorithm %v", algo)
	}
	if end <= start {
		h, _ := a.New()
		return hex.EncodeToString(h.Sum(nil)), nil // an empty range
	}
	d.c.sess.SetOp("HASH " + name)
	defer d.c.sess.SetOp("idle")
	b, err := backend.Hash(d.c.ctx, d.Fs, name, a, start, end-start)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// GetAvailableSpace answers AVBL from the agent's filesystem.
func (d *clientDriver) GetAvailableSpace(dir string) (n int64, err error) {
	defer recovered(d.c, "avbl", &err)
	ctx, cancel := context.WithTimeout(d.c.ctx, time.Minute)
	defer cancel()
	st, err := backend.StatFS(ctx, d.Fs, dir)
	if err != nil {
		return 0, err
	}
	if st.ReadOnly {
		return 0, nil // nothing can be uploaded there (a read-only mount, a directory above the mounts)
	}
	return int64(st.BlocksAvailable * st.FragmentSize), nil
}

// Symlink is SITE SYMLINK.
func (d *clientDriver) Symlink(oldname, newname string) (err error) {
	defer recovered(d.c, "symlink", &err)
	return backend.Symlink(d.Fs, oldname, newname)
}

// transferFile is a file open for a transfer: it keeps the session's
// current operation. (The gateway logs and counts the transfer; a full disk,
// which the agent's asynchronous acknowledgements often report in a later
// Write rather than in Close, is coded 552 by driver.ReplyCode.)
//
// A STOR that ALLO announced commits only if the announced size arrived:
// FTP marks an upload's end by closing the data connection, so a
// connection that closes early but cleanly is otherwise indistinguishable
// from a shorter file. An upload whose control connection the client has
// already closed (a killed client) commits nothing either.
type transferFile struct {
	backend.FileWrapper // TransferError reaches the backend: an aborted upload is discarded
	d                   *clientDriver
	upload              bool  // STOR or APPE, not RETR
	announced           int64 // ALLO's size for this STOR, 0 if none
	offset              int64 // REST's offset (ftpserverlib seeks to it)
	written             atomic.Int64
	aborted             atomic.Bool
}

// ErrShortUpload is wrapped by the error of a STOR that ended with another
// size than its ALLO announced: nothing was committed. It is answered 451
// (try again).
var ErrShortUpload = errors.New("upload size differs from what ALLO announced")

// Read is RETR's, from the file to the data connection.
func (f *transferFile) Read(p []byte) (n int, err error) {
	defer recovered(f.d.c, "read", &err)
	return f.File.Read(p)
}

// Seek records the REST offset and passes it on.
func (f *transferFile) Seek(offset int64, whence int) (_ int64, err error) {
	defer recovered(f.d.c, "seek", &err)
	n, err := f.File.Seek(offset, whence)
	if err == nil && whence == io.SeekStart {
		f.offset = n
	}
	return n, err
}

// Write counts what the upload received.
func (f *transferFile) Write(p []byte) (n int, err error) {
	defer recovered(f.d.c, "write", &err)
	n, err = f.File.Write(p)
	f.written.Add(int64(n))
	return n, err
}

// ReadFrom is the upload's io.Copy from the data connection, passed on
// (see backend.ReadFrom) and counted.
func (f *transferFile) ReadFrom(r io.Reader) (n int64, err error) {
	defer recovered(f.d.c, "write", &err)
	n, err = backend.ReadFrom(f.File, r)
	f.written.Add(n)
	return n, err
}

// TransferError marks the transfer failed and passes it on.
func (f *transferFile) TransferError(err error) {
	var panicked error
	defer recovered(f.d.c, "abort", &panicked)
	f.aborted.Store(true)
	f.FileWrapper.TransferError(err)
}

// Close commits an upload. Its error becomes the transfer's reply (coded by
// driver.ReplyCode), so a 226 is sent only for data that landed.
func (f *transferFile) Close() (err error) {
	defer recovered(f.d.c, "close", &err)
	defer f.d.c.sess.SetOp("idle")
	if got := f.offset + f.written.Load(); f.announced > 0 && !f.aborted.Load() && got != f.announced {
		err := fmt.Errorf("%w: %d bytes arrived, ALLO announced %d; %s not committed", ErrShortUpload, got, f.announced, f.Name())
		f.FileWrapper.TransferError(err)
		f.d.log.Warn("upload not committed", "path", f.Name(), "bytes", got, "allo", f.announced)
		_ = f.File.Close()
		return err
	}
	if f.upload && !f.aborted.Load() && f.d.c.sess.PeerClosed() {
		// The data connection ended cleanly but the control connection
		// is gone: a client killed mid-upload (README, "FTP's end of
		// data"). Nobody will read a 226; nothing is committed.
		err := fmt.Errorf("control connection closed during the upload of %s (%d bytes arrived): not committed", f.Name(), f.offset+f.written.Load())
		f.FileWrapper.TransferError(err)
		f.d.log.Warn("upload not committed: control connection closed", "path", f.Name(), "bytes", f.offset+f.written.Load())
		_ = f.File.Close()
		return err
	}
	return f.File.Close()
}
