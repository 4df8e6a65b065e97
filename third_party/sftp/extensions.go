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

import (
	"encoding/binary"
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

func (p *handleExtension) id() uint32        { return p.ID }
func (p *handleExtension) readonly() bool    { return p.Name != "fsync@openssh.com" }
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
	}
	return nil
}

// serveExtension answers one of forkExtensions.
func (rs *RequestServer) serveExtension(pkt requestPacket, orderID uint32) responsePacket {
	switch p := pkt.(type) {
	case *handleExtension:
		request, ok := rs.getRequest(p.Handle)
		if !ok {
			return statusFromError(p.ID, EBADF)
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
