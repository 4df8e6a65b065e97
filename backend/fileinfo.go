package backend

import (
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

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

// unixNano encodes a time for ChtimesRequest and SetTimesOp: the zero
// time (leave unchanged) is left out (nil); any other is present, the Unix
// epoch's 0 included.
func unixNano(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ns := t.UnixNano()
	return &ns
}

// refuseEpoch refuses a time at the Unix epoch when the agent, whose
// FileFeature bits are features, cannot set one: an agent without
// FILE_FEATURE_EPOCH_TIMES takes 0 nanoseconds for "leave unchanged" and
// would answer success for a time it did not set. The error says to
// upgrade the agent. Other times, and the zero time, pass.
func refuseEpoch(features uint32, op, name string, ts ...time.Time) error {
	if features&uint32(agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES) != 0 || !hasEpoch(ts) {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: &AgentError{Code: codes.FailedPrecondition, err: ErrAgentProtocol,
		Message: "the agent cannot set a time to the Unix epoch (1970-01-01T00:00:00Z), which its protocol takes for \"leave unchanged\": upgrade the agent (upgate agent) to the gateway's version",
		Detail:  "the agent does not announce FILE_FEATURE_EPOCH_TIMES"}}
}

// hasEpoch reports whether one of ts is the Unix epoch (0 nanoseconds on
// the wire).
func hasEpoch(ts []time.Time) bool {
	for _, t := range ts {
		if !t.IsZero() && t.UnixNano() == 0 {
			return true
		}
	}
	return false
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
