package sftp

// OpenSSH's extensions beyond upstream's three (upgate fork): the request
// server answers them as OpenSSH's sftp-server does, through the handlers'
// capabilities where they need the filesystem.
//
//   - fsync@openssh.com: the open file's Sync (FileSyncer).
//   - fstatvfs@openssh.com: StatVFS of the path the handle was opened with.
//   - limits@openssh.com: the packet, read and write sizes this server
//     takes, and the open-handle limit (WithRSMaxOpenHandles; 0 is none).
//   - expand-path@openssh.com: "~" and "~/..." are the start directory,
//     then REALPATH.
//   - home-directory: the start directory, whatever the user name: a
//     request server serves one user's tree.
//   - users-groups-by-id@openssh.com: names for ids; a request server knows
//     none, so every name is "" (OpenSSH's answer for an unknown id).
//   - lsetstat@openssh.com: SETSTAT that does not follow a final link, by
//     the FileCmd handler's Lsetstat (LsetstatFileCmder); advertised only
//     with one.
//   - copy-data: copies between two open handles on the server, through
//     their ReadAt and WriteAt.

import (
	"encoding/binary"
	"io"
	"strings"
	"syscall"
)

// The extensions the request server advertises (VERSION) once it serves
// them.
var forkExtensions = []sshExtensionPair{
	{"fsync@openssh.com", "1"},
	{"fstatvfs@openssh.com", "2"},
	{"limits@openssh.com", "1"},
	{"expand-path@openssh.com", "1"},
	{"home-directory", "1"},
	{"users-groups-by-id@openssh.com", "1"},
	{"copy-data", "1"},
}

// LsetstatFileCmder is a FileCmder that sets attributes without following
// a final symbolic link, for lsetstat@openssh.com (upgate fork): Lsetstat
// gets a Request with Method "Lsetstat" whose AttrFlags and Attributes say
// what to set.
type LsetstatFileCmder interface {
	FileCmder
	Lsetstat(r *Request) error
}

// extensions is what this request server advertises.
func (rs *RequestServer) extensions() []sshExtensionPair {
	ext := append(append([]sshExtensionPair(nil), sftpExtensions...), forkExtensions...)
	if _, ok := rs.Handlers.FileCmd.(LsetstatFileCmder); ok {
		ext = append(ext, sshExtensionPair{"lsetstat@openssh.com", "1"})
	}
	return ext
}

// lsetstatExtension is lsetstat@openssh.com: a path and attributes.
type lsetstatExtension struct {
	ID    uint32
	Name  string
	Path  string
	Flags uint32
	Attrs []byte
}

func (p *lsetstatExtension) id() uint32     { return p.ID }
func (p *lsetstatExtension) readonly() bool { return false }
func (p *lsetstatExtension) respond(*Server) responsePacket {
	return statusFromError(p.ID, ErrSSHFxOpUnsupported) // request server only
}
func (p *lsetstatExtension) UnmarshalBinary(b []byte) error {
	var err error
	if p.ID, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	} else if p.Name, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.Path, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.Flags, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	}
	p.Attrs = b
	return nil
}

// copyDataExtension is copy-data: length bytes (0: to the end) from
// offset of one open handle to another at its offset.
type copyDataExtension struct {
	ID                 uint32
	Name               string
	From               string
	FromOffset, Length uint64
	To                 string
	ToOffset           uint64
}

func (p *copyDataExtension) id() uint32     { return p.ID }
func (p *copyDataExtension) readonly() bool { return false }
func (p *copyDataExtension) respond(*Server) responsePacket {
	return statusFromError(p.ID, ErrSSHFxOpUnsupported) // request server only
}
func (p *copyDataExtension) UnmarshalBinary(b []byte) error {
	var err error
	if p.ID, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	} else if p.Name, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.From, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.FromOffset, b, err = unmarshalUint64Safe(b); err != nil {
		return err
	} else if p.Length, b, err = unmarshalUint64Safe(b); err != nil {
		return err
	} else if p.To, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.ToOffset, _, err = unmarshalUint64Safe(b); err != nil {
		return err
	}
	return nil
}

// copyData serves copy-data through the handles' ReadAt and WriteAt, as
// OpenSSH's sftp-server (process_extended_copy_data; upgate fork patch
// 20): one handle for both ends, or two handles opened at one path,
// answer FAILURE, as a handle that is not an open file does; the source
// is read from its offset in pieces of 64 KiB and each piece written; a
// destination open only for reading fails (EBADF) at the first piece it
// is given, so that nothing to copy succeeds; a length of 0 copies to the
// source's end; a length the source ends before answers EOF only where a
// piece found nothing left with more than that piece still asked for, as
// sftp-server counts its pieces. A copy to the source's end stops at the
// end the source had when it began (sftp-server's never ends when it
// writes the file it reads, through another name, past its offset).
func (rs *RequestServer) copyData(p *copyDataExtension) responsePacket {
	src, ok1 := rs.getHandleOf(p.From, false)
	dst, ok2 := rs.getHandleOf(p.To, false)
	if !ok1 || !ok2 || p.From == p.To || src.Filepath == dst.Filepath {
		return unknownHandle(p.ID)
	}
	rd, ok := openFile[io.ReaderAt](src)
	if !ok || src.Method == "Put" {
		return statusFromError(p.ID, EBADF)
	}
	wr, writable := openFile[io.WriterAt](dst)
	writable = writable && dst.Method != "Get" && dst.Pflags().Write // not opened O_RDONLY (Request.open)
	const piece = 64 << 10
	buf := make([]byte, piece)
	untilEOF := p.Length == 0
	off, woff, left := int64(p.FromOffset), int64(p.ToOffset), p.Length
	// A copy to the source's end stops at the end it had when the copy
	// began: a copy into the same file through another name (a link),
	// at a later offset, would otherwise read what it wrote and never
	// end, as sftp-server's does.
	end := int64(-1)
	if untilEOF {
		var dir bool
		if end, dir = sourceSize(src); dir {
			// sftp-server's first pread of a directory fails (EISDIR)
			// whatever its size: a directory removed since its open
			// (size 0) copied nothing and answered OK (upgate's
			// TestSFTPRandom seed 23457).
			return statusFromError(p.ID, syscall.EISDIR)
		}
	}
	if end >= 0 && off >= end {
		// A copy from at or past the end the source had still reads it
		// once, as sftp-server's first pread(2) does: that read is what
		// moves the source's atime (upgate's TestSFTPRandom seed
		// 24638). What it finds (the source grew since) lies past that
		// end, and is not copied, as it would not be from before it.
		if _, err := rd.ReadAt(buf[:1], off); err != nil && err != io.EOF {
			return statusFromError(p.ID, err)
		}
		return statusFromError(p.ID, nil)
	}
	for untilEOF || left > 0 {
		n := uint64(piece)
		if !untilEOF {
			n = min(n, left)
			left -= n
		}
		if end >= 0 {
			if off >= end {
				break
			}
			n = min(n, uint64(end-off))
		}
		got, err := rd.ReadAt(buf[:n], off)
		if got == 0 && (err == nil || err == io.EOF) {
			if !untilEOF && left > 0 {
				return statusFromError(p.ID, io.EOF)
			}
			break
		}
		if got > 0 {
			if !writable {
				return statusFromError(p.ID, EBADF)
			}
			if _, werr := wr.WriteAt(buf[:got], woff); werr != nil {
				return statusFromError(p.ID, werr)
			}
			off, woff = off+int64(got), woff+int64(got)
		}
		if err != nil && err != io.EOF {
			return statusFromError(p.ID, err)
		}
	}
	return statusFromError(p.ID, nil)
}

// sourceSize is the size of r's open file now, or -1 where it cannot
// tell: its Stat (FileStater: an upgate handle, an os.File), or its Size
// (a file that is its own FileInfo, as the in-memory handler's); and
// whether that Stat says it is a directory.
func sourceSize(r *Request) (int64, bool) {
	if st, ok := openFile[FileStater](r); ok {
		if fi, err := st.Stat(); err == nil {
			return fi.Size(), fi.IsDir()
		}
		return -1, false
	}
	if sz, ok := openFile[interface{ Size() int64 }](r); ok {
		return sz.Size(), false
	}
	return -1, false
}

// FileSyncer is an open file that can flush itself to stable storage, as
// fsync(2): fsync@openssh.com on its handle calls Sync (upgate fork).
type FileSyncer interface {
	Sync() error
}

// handleExtension is one extension request that names a handle.
type handleExtension struct {
	ID     uint32
	Name   string
	Handle string
}

func (p *handleExtension) id() uint32     { return p.ID }
func (p *handleExtension) readonly() bool { return p.Name != "fsync@openssh.com" }
func (p *handleExtension) respond(*Server) responsePacket {
	return statusFromError(p.ID, ErrSSHFxOpUnsupported) // request server only
}
func (p *handleExtension) getHandle() string { return p.Handle }
func (p *handleExtension) UnmarshalBinary(b []byte) error {
	var err error
	if p.ID, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	} else if p.Name, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if p.Handle, _, err = unmarshalStringSafe(b); err != nil {
		return err
	}
	return nil
}

// stringExtension is one extension request with a string argument (a
// path, a user name) or none.
type stringExtension struct {
	ID   uint32
	Name string
	Arg  string
}

func (p *stringExtension) id() uint32     { return p.ID }
func (p *stringExtension) readonly() bool { return true }
func (p *stringExtension) respond(*Server) responsePacket {
	return statusFromError(p.ID, ErrSSHFxOpUnsupported) // request server only
}
func (p *stringExtension) UnmarshalBinary(b []byte) error {
	var err error
	if p.ID, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	} else if p.Name, b, err = unmarshalStringSafe(b); err != nil {
		return err
	}
	if len(b) > 0 {
		if p.Arg, _, err = unmarshalStringSafe(b); err != nil {
			return err
		}
	}
	return nil
}

// idsExtension is users-groups-by-id@openssh.com.
type idsExtension struct {
	ID         uint32
	Name       string
	Uids, Gids []uint32
}

func (p *idsExtension) id() uint32     { return p.ID }
func (p *idsExtension) readonly() bool { return true }
func (p *idsExtension) respond(*Server) responsePacket {
	return statusFromError(p.ID, ErrSSHFxOpUnsupported) // request server only
}
func (p *idsExtension) UnmarshalBinary(b []byte) error {
	var err error
	var uids, gids string
	if p.ID, b, err = unmarshalUint32Safe(b); err != nil {
		return err
	} else if p.Name, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if uids, b, err = unmarshalStringSafe(b); err != nil {
		return err
	} else if gids, _, err = unmarshalStringSafe(b); err != nil {
		return err
	}
	read := func(s string) ([]uint32, error) {
		if len(s)%4 != 0 {
			return nil, errShortPacket
		}
		out := make([]uint32, 0, len(s)/4)
		for i := 0; i < len(s); i += 4 {
			out = append(out, binary.BigEndian.Uint32([]byte(s[i:i+4])))
		}
		return out, nil
	}
	if p.Uids, err = read(uids); err != nil {
		return err
	}
	p.Gids, err = read(gids)
	return err
}

// extendedReply is an SSH_FXP_EXTENDED_REPLY with its data.
type extendedReply struct {
	ID   uint32
	Data []byte
}

func (p *extendedReply) id() uint32 { return p.ID }
func (p *extendedReply) MarshalBinary() ([]byte, error) {
	b := []byte{0, 0, 0, 0, sshFxpExtendedReply}
	b = marshalUint32(b, p.ID)
	return append(b, p.Data...), nil
}

// forkExtension returns the packet for the extended request name, if the
// fork serves it.
func forkExtension(name string) interface {
	serverRespondablePacket
	readonly() bool
} {
	switch name {
	case "fsync@openssh.com", "fstatvfs@openssh.com":
		return &handleExtension{}
	case "limits@openssh.com", "expand-path@openssh.com", "home-directory":
		return &stringExtension{}
	case "users-groups-by-id@openssh.com":
		return &idsExtension{}
	case "lsetstat@openssh.com":
		return &lsetstatExtension{}
	case "copy-data":
		return &copyDataExtension{}
	}
	return nil
}

// serveExtension answers one of forkExtensions.
func (rs *RequestServer) serveExtension(pkt requestPacket, orderID uint32) responsePacket {
	switch p := pkt.(type) {
	case *handleExtension:
		request, ok := rs.getHandleOf(p.Handle, false)
		if !ok && p.Name == "fsync@openssh.com" {
			return statusFromError(p.ID, EBADF) // NO_SUCH_FILE, as sftp-server
		} else if !ok {
			return unknownHandle(p.ID)
		}
		switch p.Name {
		case "fsync@openssh.com":
			f, ok := openFile[FileSyncer](request)
			if !ok {
				return statusFromError(p.ID, ErrSSHFxOpUnsupported)
			}
			return statusFromError(p.ID, f.Sync())
		default: // fstatvfs@openssh.com
			r := &Request{Method: "StatVFS", Filepath: request.Filepath}
			return r.call(rs.Handlers, &sshFxpExtendedPacketStatVFS{ID: p.ID, Path: request.Filepath}, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
		}
	case *stringExtension:
		switch p.Name {
		case "limits@openssh.com":
			var b []byte
			b = binary.BigEndian.AppendUint64(b, maxMsgLength)
			b = binary.BigEndian.AppendUint64(b, uint64(rs.maxTxPacket))
			b = binary.BigEndian.AppendUint64(b, maxMsgLength-1024)
			b = binary.BigEndian.AppendUint64(b, uint64(rs.maxOpenHandles))
			return &extendedReply{ID: p.ID, Data: b}
		case "home-directory":
			return nameReply(p.ID, rs.startDirectory)
		default: // expand-path@openssh.com
			path := p.Arg
			switch {
			case path == "~":
				path = rs.startDirectory
			case strings.HasPrefix(path, "~/"):
				path = strings.TrimSuffix(rs.startDirectory, "/") + path[1:]
			case strings.HasPrefix(path, "~"):
				return statusFromError(p.ID, syscall.ENOENT) // another user's home
			}
			var realPath string
			var err error
			switch pather := rs.Handlers.FileList.(type) {
			case RealPathFileLister:
				realPath, err = pather.RealPath(path)
			default:
				realPath = cleanPathWithBase(rs.startDirectory, path)
			}
			if err != nil {
				return statusFromError(p.ID, err)
			}
			return nameReply(p.ID, realPath)
		}
	case *lsetstatExtension:
		l, ok := rs.Handlers.FileCmd.(LsetstatFileCmder)
		if !ok {
			return statusFromError(p.ID, ErrSSHFxOpUnsupported)
		}
		return statusFromError(p.ID, l.Lsetstat(&Request{
			Method: "Lsetstat", Filepath: cleanPathWithBase(rs.startDirectory, p.Path),
			Flags: p.Flags, Attrs: p.Attrs,
		}))
	case *copyDataExtension:
		return rs.copyData(p)
	case *idsExtension:
		names := func(n int) string {
			var b []byte
			for range n {
				b = marshalString(b, "")
			}
			return string(b)
		}
		return &extendedReply{ID: p.ID, Data: marshalString(marshalString(nil, names(len(p.Uids))), names(len(p.Gids)))}
	}
	return statusFromError(pkt.id(), ErrSSHFxOpUnsupported)
}

func nameReply(id uint32, name string) responsePacket {
	return &sshFxpNamePacket{ID: id, NameAttrs: []*sshFxpNameAttr{{Name: name, LongName: name, Attrs: emptyFileStat}}}
}
