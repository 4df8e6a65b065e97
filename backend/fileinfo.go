package backend

import (
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// Stat is what a FileInfo from an agent returns from Sys(): the fields of
// stat(2) that fs.FileInfo has no place for.
type Stat struct {
	UID, GID uint32
	Nlink    uint64
	Atime    time.Time
}

// NewFileInfo is an fs.FileInfo whose Sys is a *Stat, as the gRPC
// filesystem's are: another Fs (backend/memfs) describes its files with it
// so that frontends show owners, link counts and atimes alike. It is a
// snapshot: later changes to the file do not show in it.
func NewFileInfo(name string, size int64, mode fs.FileMode, mtime time.Time, st Stat) fs.FileInfo {
	return &fileInfo{name: name, size: size, mode: mode, mtime: mtime, stat: st}
}

// fileInfo is an fs.FileInfo decoded from the wire.
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
	stat  Stat
}

func newFileInfo(pb *agentpb.FileInfo, name string) *fileInfo {
	if name == "" {
		name = string(pb.GetName())
	}
	fi := &fileInfo{
		name:  name,
		size:  pb.GetSize(),
		mode:  fs.FileMode(pb.GetMode()),
		mtime: time.Unix(0, pb.GetMtimeUnixNano()),
		stat:  Stat{UID: pb.GetUid(), GID: pb.GetGid(), Nlink: pb.GetNlink()},
	}
	if pb.GetAtimeUnixNano() != 0 {
		fi.stat.Atime = time.Unix(0, pb.GetAtimeUnixNano())
	}
	return fi
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi *fileInfo) ModTime() time.Time { return fi.mtime }
func (fi *fileInfo) IsDir() bool        { return fi.mode.IsDir() }

// Sys returns a *Stat.
func (fi *fileInfo) Sys() any { return &fi.stat }

// unixNano encodes a time for the wire; the zero time (leave unchanged)
// becomes 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// checkTimes refuses times the wire cannot carry (nanoseconds since 1970
// in an int64: years 1678 to 2262), which would otherwise land as another
// date; the zero time means "leave unchanged" and passes.
func checkTimes(op, name string, ts ...time.Time) error {
	for _, t := range ts {
		if !t.IsZero() && !time.Unix(0, t.UnixNano()).Equal(t) {
			return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%w: time %s is out of range (years 1678 to 2262)", syscall.EINVAL, t.UTC().Format(time.RFC3339))}
		}
	}
	return nil
}
