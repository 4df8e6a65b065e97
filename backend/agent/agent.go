// Package agent serves the upgate agent protocol (package agentpb) over one
// directory. It runs inside a container (`upgate agent`) or in-process for
// the embedded default, and it never knows about users or protocols: it sees
// paths relative to its root and a bearer token.
//
// Invariants:
//   - every path is resolved through os.Root: "..", absolute paths, NUL
//     bytes and symbolic links that lead outside the root are refused;
//   - a call that names a directory in agentpb.ScopeMetadata (the gateway
//     sends the user's root) is confined to it the same way, so a link
//     cannot lead into a sibling directory either (see scope in paths.go);
//   - every call must carry the token (see Config.Token);
//   - an open that creates or truncates a file writes a hidden temp file in
//     the same directory that is renamed over the target only on a clean
//     CloseOp; any other end of the stream removes it (see file.go);
//   - every Open stream closes its file when it ends, so OpenHandles returns
//     to zero once the gateway's streams are gone.
package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// Config configures a Server. The zero value is not usable: Root and Token
// are required.
type Config struct {
	// Root is the directory served. It must exist.
	Root string
	// Token is the bearer token every call must present, compared in
	// constant time. It must not be empty.
	Token string
	// Logger receives one line per failed call and per aborted upload. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Version is reported by the Status call. Empty means "dev".
	Version string
	// MaxOpenFiles bounds the files the agent holds open for Open streams
	// at once, over all gateways and users; an open beyond it fails with
	// EMFILE ("too many open files"), so that no client can exhaust the
	// process's descriptors (each open file costs up to two). Zero means
	// DefaultMaxOpenFiles(); negative means no bound.
	MaxOpenFiles int
	// Hooks run after changes under Root (package hooks; the agent's
	// hook file, `upgate agent --hooks`). Nil means none. Committed
	// changes and hook runs are streamed by the AgentEvents service
	// either way.
	Hooks []hooks.Hook
}

// DefaultMaxOpenFiles is a quarter of the process's descriptor limit
// (RLIMIT_NOFILE), at most 4096 and at least 64: room for every open file's
// two descriptors with half the limit to spare for everything else.
func DefaultMaxOpenFiles() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	return int(min(max(lim.Cur/4, 64), 4096))
}

// Server implements agentpb.AgentServer over Config.Root.
type Server struct {
	agentpb.UnimplementedAgentServer

	root     *root
	token    []byte
	log      *slog.Logger
	version  string
	maxFiles int64 // 0: no bound
	// euid is the agent's effective user: an upload over another
	// user's file writes it in place (openIn).
	euid uint32

	openHandles atomic.Int64
	events      *events // changes and hook runs (events.go)

	// buffers is the gRPC transport's and codec's buffer pool
	// (ServerOptions); a Session's large writes come back to it once
	// written (session.recycle).
	buffers *agentpb.BufferPool

	// mu guards uploads: the atomic uploads in progress, by upload id,
	// with their paths (see handle); and swept: when each directory was
	// last swept for stale temp files (see sweepStaleTemps). Commits,
	// renames and joins hold it across their rename or open, so that an
	// upload's temp file never moves under them.
	mu      sync.Mutex
	uploads map[string]*handle
	swept   map[string]time.Time

	// links orders the checks that keep every link made through the
	// agent inside the user's root with the operations they check and
	// those that change where a checked path leads: Symlink, Link,
	// Rename and Mkdir (links.go). Taken before mu.
	links linkLocks

	// busyMu guards activities: what Busy counts besides v1Calls (the
	// Session streams and v1 Open streams being served; busy.go).
	busyMu     sync.Mutex
	activities map[*activity]struct{}
	v1Calls    activity // protocol v1's unary calls and listings, together

	// testReleaseHook, when set (by tests in this package), is called
	// just before afterReply releases a replaced file.
	testReleaseHook func()
}

// New opens cfg.Root and returns a Server for it. Close releases the root.
func New(cfg Config) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("agent: a token is required")
	}
	if cfg.Root == "" {
		return nil, errors.New("agent: a root directory is required")
	}
	root, err := openRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("agent: open root: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	version := cfg.Version
	if version == "" {
		version = "dev"
	}
	maxFiles := int64(cfg.MaxOpenFiles)
	switch {
	case maxFiles == 0:
		maxFiles = int64(DefaultMaxOpenFiles())
	case maxFiles < 0:
		maxFiles = 0
	}
	s := &Server{
		maxFiles:   maxFiles,
		euid:       uint32(os.Geteuid()),
		root:       root,
		token:      []byte(cfg.Token),
		log:        log.With("component", "agent", "root", cfg.Root),
		version:    version,
		uploads:    make(map[string]*handle),
		activities: make(map[*activity]struct{}),
		buffers:    agentpb.NewBufferPool(),
	}
	if err := s.startEvents(cfg.Root, cfg.Hooks); err != nil { // hooks+events
		root.Close()
		return nil, err
	}
	return s, nil
}

// OpenHandles reports how many files the agent holds open for Open streams
// right now.
func (s *Server) OpenHandles() int64 { return s.openHandles.Load() }

// UploadsInProgress reports how many atomic uploads are open.
func (s *Server) UploadsInProgress() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.uploads))
}

// Close stops the hooks (a running hook's process group is killed) and
// releases the root directory. Streams still open keep their files until
// they end; stop the gRPC server first.
func (s *Server) Close() error {
	s.stopEvents() // hooks+events
	return s.root.Close()
}
