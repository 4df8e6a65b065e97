package sftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

const defaultMaxTxPacket uint32 = 1 << 15

// Handlers contains the 4 SFTP server request handlers.
type Handlers struct {
	FileGet  FileReader
	FilePut  FileWriter
	FileCmd  FileCmder
	FileList FileLister
}

// RequestServer abstracts the sftp protocol with an http request-like protocol
type RequestServer struct {
	Handlers Handlers

	*serverConn
	pktMgr *packetManager

	startDirectory string
	maxTxPacket    uint32
	// maxOpenHandles bounds the handles open at once; 0 is no bound
	// (upgate fork, WithRSMaxOpenHandles).
	maxOpenHandles int

	mu           sync.RWMutex
	handleCount  int
	openRequests map[string]*Request
}

// WithRSMaxOpenHandles bounds the files and directories a client may hold
// open at once: an OPEN or OPENDIR beyond n fails (EMFILE, FAILURE with a
// message), as OpenSSH's sftp-server does at its handle limit, and
// limits@openssh.com reports n. Zero, the default, is no bound (upgate
// fork).
func WithRSMaxOpenHandles(n int) RequestServerOption {
	return func(rs *RequestServer) {
		rs.maxOpenHandles = max(n, 0)
	}
}

// A RequestServerOption is a function which applies configuration to a RequestServer.
type RequestServerOption func(*RequestServer)

// WithRSAllocator enable the allocator.
// After processing a packet we keep in memory the allocated slices
// and we reuse them for new packets.
// The allocator is experimental
func WithRSAllocator() RequestServerOption {
	return func(rs *RequestServer) {
		alloc := newAllocator()
		rs.pktMgr.alloc = alloc
		rs.conn.alloc = alloc
	}
}

// WithStartDirectory sets a start directory to use as base for relative paths.
// If unset the default is "/"
func WithStartDirectory(startDirectory string) RequestServerOption {
	return func(rs *RequestServer) {
		rs.startDirectory = cleanPath(startDirectory)
	}
}

// WithRSMaxTxPacket sets the maximum size of the payload returned to the client,
// measured in bytes. The default value is 32768 bytes, and this option
// can only be used to increase it. Setting this option to a larger value
// should be safe, because the client decides the size of the requested payload.
//
// The default maximum packet size is 32768 bytes.
func WithRSMaxTxPacket(size uint32) RequestServerOption {
	return func(rs *RequestServer) {
		if size < defaultMaxTxPacket {
			return
		}

		rs.maxTxPacket = size
	}
}

// NewRequestServer creates/allocates/returns new RequestServer.
// Normally there will be one server per user-session.
func NewRequestServer(rwc io.ReadWriteCloser, h Handlers, options ...RequestServerOption) *RequestServer {
	svrConn := &serverConn{
		conn: conn{
			Reader:      rwc,
			WriteCloser: rwc,
		},
	}
	rs := &RequestServer{
		Handlers: h,

		serverConn: svrConn,
		pktMgr:     newPktMgr(svrConn),

		startDirectory: "/",
		maxTxPacket:    defaultMaxTxPacket,

		openRequests: make(map[string]*Request),
	}

	rs.pktMgr.sequential = rs.appendWrite

	for _, o := range options {
		o(rs)
	}
	return rs
}

// appendWrite reports whether pkt is a write on a handle opened with
// APPEND: those are served in arrival order (upgate fork, see
// packetManager.sequential), so that a handler may append each at the
// end of the file, as OpenSSH's sftp-server does, whatever offsets the
// client sent (curl -a and pkg/sftp's client count them from 0, OpenSSH's
// reput from the file's size).
func (rs *RequestServer) appendWrite(pkt requestPacket) bool {
	w, ok := pkt.(*sshFxpWritePacket)
	if !ok {
		return false
	}
	r, ok := rs.getRequest(w.Handle)
	return ok && r.Pflags().Append
}

// New Open packet/Request
func (rs *RequestServer) nextRequest(r *Request) (string, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()

	if rs.maxOpenHandles > 0 && len(rs.openRequests) >= rs.maxOpenHandles {
		return "", &os.PathError{Op: "open", Path: r.Filepath,
			Err: fmt.Errorf("%d handles already open: %w", len(rs.openRequests), syscall.EMFILE)}
	}

	rs.handleCount++

	r.handle = strconv.Itoa(rs.handleCount)
	rs.openRequests[r.handle] = r

	return r.handle, nil
}

// Returns Request from openRequests, bool is false if it is missing.
//
// The Requests in openRequests work essentially as open file descriptors that
// you can do different things with. What you are doing with it are denoted by
// the first packet of that type (read/write/etc).
func (rs *RequestServer) getRequest(handle string) (*Request, bool) {
	rs.mu.RLock()
	defer rs.mu.RUnlock()

	r, ok := rs.openRequests[handle]
	return r, ok
}

// getHandleOf returns the Request of handle if it is open and of the
// kind asked: a directory's (OPENDIR) when dir is set, a file's (OPEN)
// otherwise. Like a handle that is not open, one of the wrong kind is
// answered with unknownHandle, as sftp-server's handle_to_fd and
// handle_to_dir fail for it (upgate fork: upstream served a READ on a
// directory handle from its listing, consuming it).
func (rs *RequestServer) getHandleOf(handle string, dir bool) (*Request, bool) {
	r, ok := rs.getRequest(handle)
	if !ok || (r.Method == "List") != dir {
		return nil, false
	}
	return r, true
}

// unknownHandle answers a request on a handle that is not open (never
// was, or closed since), or not of the kind the request needs (see
// getHandleOf), as OpenSSH's sftp-server does when handle_to_fd or
// handle_to_dir fail: SSH_FX_FAILURE (upgate fork: upstream answered
// EBADF, which the errno mapping codes NO_SUCH_FILE, what a client takes
// for "the file is gone"). CLOSE and fsync@openssh.com of such a handle
// keep NO_SUCH_FILE, as sftp-server answers those.
func unknownHandle(id uint32) *sshFxpStatusPacket {
	return statusFromError(id, ErrSSHFxFailure)
}

// badPacket stands for a request that cannot be served as sent: an
// unknown type, or one that cannot be read (upgate fork, patch 21). It is
// answered err's status, in its place among the others' answers.
type badPacket struct {
	ID  uint32
	err error
}

func (p *badPacket) id() uint32                   { return p.ID }
func (p *badPacket) UnmarshalBinary([]byte) error { return nil }

// Close the Request and clear from openRequests map
func (rs *RequestServer) closeRequest(handle string) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()

	if r, ok := rs.openRequests[handle]; ok {
		delete(rs.openRequests, handle)
		return r.close()
	}

	return EBADF
}

// Close the read/write/closer to trigger exiting the main server loop
func (rs *RequestServer) Close() error { return rs.conn.Close() }

func (rs *RequestServer) serveLoop(dispatch func(orderedRequest), done func()) error {
	defer done() // shuts down sftpServerWorkers

	var err error
	var pkt requestPacket
	var pktType fxp
	var pktBytes []byte

	for {
		pktType, pktBytes, err = rs.serverConn.recvPacket(rs.pktMgr.getNextOrderID())
		if err != nil {
			// we don't care about releasing allocated pages here, the server will quit and the allocator freed
			return err
		}

		pkt, err = makePacket(rxPacket{pktType, pktBytes})
		if err != nil {
			switch {
			case errors.Is(err, errUnknownExtendedPacket):
				// do nothing
			case errors.Is(err, errUnknownPacketType) && len(pktBytes) >= 4:
				// upgate fork (patch 21): answered OP_UNSUPPORTED, and
				// the session goes on (upstream ended it).
				pkt = &badPacket{ID: binary.BigEndian.Uint32(pktBytes),
					err: fmt.Errorf("%w: unknown request type %d", ErrSSHFxOpUnsupported, uint8(pktType))}
			default:
				// upgate fork (patch 21): a request that cannot be
				// read ends the session, as on sftp-server, whose
				// uploads are then aborted; but the requests before it
				// are answered first, and it too, BAD_MESSAGE, where
				// its id can be read. Upstream closed the channel at
				// once, while the requests before it were still being
				// served.
				debug("makePacket err: %v", err)
				err = fmt.Errorf("malformed %v request: %w", pktType, err)
				if len(pktBytes) >= 4 && pktType != sshFxpInit {
					dispatch(rs.pktMgr.newOrderedRequest(&badPacket{ID: binary.BigEndian.Uint32(pktBytes),
						err: fmt.Errorf("%w: %v; the session ends", ErrSSHFxBadMessage, err)}))
				}
				return err
			}
		}

		dispatch(rs.pktMgr.newOrderedRequest(pkt))
	}
}

// Serve requests for user session
func (rs *RequestServer) Serve() error {
	defer func() {
		if rs.pktMgr.alloc != nil {
			rs.pktMgr.alloc.Free()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	runWorker := func(ch chan orderedRequest) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rs.packetWorker(ctx, ch); err != nil {
				rs.conn.Close() // shuts down recvPacket
			}
		}()
	}
	err := rs.serveLoop(rs.pktMgr.workers(runWorker))

	wg.Wait() // wait for all workers to exit

	rs.mu.Lock()
	defer rs.mu.Unlock()

	// make sure all open requests are properly closed
	// (eg. possible on dropped connections, client crashes, etc.)
	for handle, req := range rs.openRequests {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		req.transferError(err)

		delete(rs.openRequests, handle)
		req.close()
	}

	return err
}

func (rs *RequestServer) packetWorker(ctx context.Context, pktChan chan orderedRequest) error {
	for pkt := range pktChan {
		orderID := pkt.orderID()
		if epkt, ok := pkt.requestPacket.(*sshFxpExtendedPacket); ok {
			if epkt.SpecificPacket != nil {
				pkt.requestPacket = epkt.SpecificPacket
			}
		}

		var rpkt responsePacket
		switch pkt := pkt.requestPacket.(type) {
		case *sshFxInitPacket:
			rpkt = &sshFxVersionPacket{Version: sftpProtocolVersion, Extensions: rs.extensions()}
		case *sshFxpClosePacket:
			handle := pkt.getHandle()
			rpkt = statusFromError(pkt.ID, rs.closeRequest(handle))
		case *badPacket:
			rpkt = statusFromError(pkt.ID, pkt.err)
		case *sshFxpRealpathPacket:
			var realPath string
			var err error

			switch pather := rs.Handlers.FileList.(type) {
			case RealPathFileLister:
				realPath, err = pather.RealPath(pkt.getPath())
			case legacyRealPathFileLister:
				realPath = pather.RealPath(pkt.getPath())
			default:
				realPath = cleanPathWithBase(rs.startDirectory, pkt.getPath())
			}
			if err != nil {
				rpkt = statusFromError(pkt.ID, err)
			} else {
				rpkt = cleanPacketPath(pkt, realPath)
			}
		case *sshFxpOpendirPacket:
			request := requestFromPacket(ctx, pkt, rs.startDirectory)
			handle, err := rs.nextRequest(request)
			if err != nil {
				request.close()
				rpkt = statusFromError(pkt.ID, err)
				break
			}
			rpkt = request.opendir(rs.Handlers, pkt)
			if _, ok := rpkt.(*sshFxpHandlePacket); !ok {
				// if we return an error we have to remove the handle from the active ones
				rs.closeRequest(handle)
			}
		case *sshFxpOpenPacket:
			request := requestFromPacket(ctx, pkt, rs.startDirectory)
			handle, err := rs.nextRequest(request)
			if err != nil {
				request.close()
				rpkt = statusFromError(pkt.ID, err)
				break
			}
			rpkt = request.open(rs.Handlers, pkt)
			if _, ok := rpkt.(*sshFxpHandlePacket); !ok {
				// if we return an error we have to remove the handle from the active ones
				rs.closeRequest(handle)
			}
		case *sshFxpFstatPacket:
			handle := pkt.getHandle()
			request, ok := rs.getHandleOf(handle, false)
			if !ok {
				rpkt = unknownHandle(pkt.ID)
			} else if st, ok := openFile[FileStater](request); ok {
				if fi, err := st.Stat(); err != nil {
					rpkt = statusFromError(pkt.ID, err)
				} else {
					rpkt = &sshFxpStatResponse{ID: pkt.ID, info: fi}
				}
			} else {
				request = &Request{
					Method:   "Stat",
					Filepath: cleanPathWithBase(rs.startDirectory, request.Filepath),
				}
				rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
			}
		case *sshFxpFsetstatPacket:
			handle := pkt.getHandle()
			request, ok := rs.getHandleOf(handle, false)
			if !ok {
				rpkt = unknownHandle(pkt.ID)
			} else if ss, ok := openFile[FileSetStater](request); ok {
				attrs, _ := pkt.Attrs.([]byte)
				rpkt = statusFromError(pkt.ID, ss.SetStat(&Request{
					Method:   "Setstat",
					Filepath: cleanPathWithBase(rs.startDirectory, request.Filepath),
					Flags:    pkt.Flags,
					Attrs:    attrs,
				}))
			} else {
				request = &Request{
					Method:   "Setstat",
					Filepath: cleanPathWithBase(rs.startDirectory, request.Filepath),
				}
				rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
			}
		case *sshFxpExtendedPacketPosixRename:
			request := &Request{
				Method:   "PosixRename",
				Filepath: cleanPathWithBase(rs.startDirectory, pkt.Oldpath),
				Target:   cleanPathWithBase(rs.startDirectory, pkt.Newpath),
				// upgate fork: as requestFromPacket (patches 16, 18).
				trailingSlash: hasTrailingSlash(pkt.Oldpath),
				targetSlash:   hasTrailingSlash(pkt.Newpath),
			}
			rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
		case *handleExtension, *stringExtension, *idsExtension, *lsetstatExtension, *copyDataExtension:
			rpkt = rs.serveExtension(pkt, orderID)
		case *sshFxpExtendedPacketStatVFS:
			request := &Request{
				Method:   "StatVFS",
				Filepath: cleanPathWithBase(rs.startDirectory, pkt.Path),
			}
			rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
		case hasHandle:
			handle := pkt.getHandle()
			_, readdir := pkt.(*sshFxpReaddirPacket)
			request, ok := rs.getHandleOf(handle, readdir)
			if !ok {
				rpkt = unknownHandle(pkt.id())
			} else {
				rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
			}
		case hasPath:
			request := requestFromPacket(ctx, pkt, rs.startDirectory)
			rpkt = request.call(rs.Handlers, pkt, rs.pktMgr.alloc, orderID, rs.maxTxPacket)
			request.close()
		default:
			rpkt = statusFromError(pkt.id(), ErrSSHFxOpUnsupported)
		}

		rs.pktMgr.readyPacket(
			rs.pktMgr.newOrderedResponse(rpkt, orderID))
	}
	return nil
}

// clean and return name packet for file
func cleanPacketPath(pkt *sshFxpRealpathPacket, realPath string) responsePacket {
	return &sshFxpNamePacket{
		ID: pkt.id(),
		NameAttrs: []*sshFxpNameAttr{
			{
				Name:     realPath,
				LongName: realPath,
				Attrs:    emptyFileStat,
			},
		},
	}
}

// Makes sure we have a clean POSIX (/) absolute path to work with
func cleanPath(p string) string {
	return cleanPathWithBase("/", p)
}

func cleanPathWithBase(base, p string) string {
	p = filepath.ToSlash(filepath.Clean(p))
	if !path.IsAbs(p) {
		return path.Join(base, p)
	}
	return p
}
