package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a session ends, as logs and metrics name them.
const (
	ReasonClosed       = "closed"        // the frontend or the client ended it
	ReasonIdle         = "idle timeout"  // alive but silent for connections.idle_timeout
	ReasonProgress     = "no progress"   // a data transfer moved no byte for the progress timeout
	ReasonKicked       = "kicked"        // an operator closed it
	ReasonSSHKeepalive = "ssh keepalive" // SSH keepalive requests went unanswered
	ReasonDrain        = "drain"         // the gateway is shutting down
	ReasonLimit        = "limit"         // refused: too many connections
	ReasonBanned       = "banned"        // refused: the defender banned the address
	ReasonProxy        = "proxy"         // refused: bad or missing PROXY header
	ReasonDataRefused  = "data refused"  // refused: a data connection its control session may not have
	ReasonRevoked      = "login revoked" // a configuration reload removed the user or the credential it logged in with
)

// ErrNoSession is returned (wrapped, with the ID) for a session that does
// not exist or has ended.
var ErrNoSession = errors.New("gateway: no session")

// ErrTooManyConnections is returned (wrapped, with the limit) when a
// connection or a login would exceed a limit.
var ErrTooManyConnections = errors.New("gateway: too many connections")

// Limits bound concurrent sessions. Zero means no limit. Data connections
// (FTP's) count under their control session, not on their own.
type Limits struct {
	Max, PerIP, PerUser int
}

// Session is one client connection in the registry: an FTP control
// connection, an SSH connection, or an FTP data connection under its
// control session (Parent).
type Session struct {
	ID       string
	Protocol string
	Remote   net.Addr // the client, as PROXY protocol tells it when used
	Local    net.Addr
	Start    time.Time
	Parent   *Session // nil except for data connections

	r     *Registry
	ip    netip.Addr
	tcp   *net.TCPConn // the socket, for its options; nil if not TCP
	log   *slog.Logger
	idle  time.Duration
	timer *time.Timer // idle timer; nil when there is no idle timeout
	// postOpens is its Protocol's PostUploadOpens.
	postOpens bool
	// readersFollow is its Protocol's ReadersFollowSaves.
	readersFollow bool

	user         atomic.Pointer[string]
	cred         atomic.Pointer[credential] // what the login used, for reloads (revoke.go)
	revoked      atomic.Pointer[string]     // why a reload revoked the login; its Fs then refuses all
	op           atomic.Pointer[string]
	lastActivity atomic.Int64 // unix nanos of the client's last request
	lastIO       atomic.Int64 // unix nanos of the last byte either way
	lastWork     atomic.Int64 // unix nanos of the last filesystem operation or file I/O (work)
	pathOps      atomic.Int32 // path operations in progress (sessionFs.guard, Hash)
	bytesIn      atomic.Int64
	bytesOut     atomic.Int64
	childIn      atomic.Int64 // bytes of finished data connections
	childOut     atomic.Int64
	transfers    atomic.Int32
	openFiles    atomic.Int32 // files and directories open through the session's Fs
	peakFiles    atomic.Int32 // the most of them open at once, for the close log line

	// mu guards closer, goodbye, reason and closed.
	mu      sync.Mutex
	closer  func() error
	goodbye func(message string)
	reason  string
	closed  bool
}

// admitsData says why a data connection from remote may not join the
// session, or nil: the session must have a logged-in user and be live, and
// remote must have its IP unless anyAddress.
func (s *Session) admitsData(remote net.Addr, anyAddress bool) error {
	if s.User() == "" {
		return errors.New("gateway: data connection refused: its control session is not logged in")
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("gateway: data connection refused: its control session has ended")
	}
	if ip := addrIP(remote); !anyAddress && ip != s.ip {
		return fmt.Errorf("gateway: data connection from %s refused: the control connection is from %s", ip, s.ip)
	}
	return nil
}

// User returns the authenticated user, or "" before login.
func (s *Session) User() string {
	if u := s.user.Load(); u != nil {
		return *u
	}
	return ""
}

// Touch records client activity: it resets the idle timeout. Frontends
// call it for every request the client makes (an SSH keepalive the client
// sends, an SFTP packet); FTP control connections are touched by every
// byte the client sends.
func (s *Session) Touch() {
	now := s.r.now().UnixNano()
	s.lastActivity.Store(now)
	if s.Parent != nil {
		s.Parent.lastActivity.Store(now)
	}
}

// SetOp records the operation in progress, shown by the sessions view.
func (s *Session) SetOp(op string) { s.op.Store(&op) }

// BeginTransfer marks a transfer in progress (an open file): the session is
// not idle while one is, and a drain waits for it. Call the returned func
// when it ends.
func (s *Session) BeginTransfer() (end func()) {
	s.transfers.Add(1)
	var once sync.Once
	return func() { once.Do(func() { s.transfers.Add(-1); s.lastIO.Store(s.r.now().UnixNano()) }) }
}

// fileOpened counts a file or directory the session opened; the function
// returned counts it closed (once). The peak goes into the session's close
// log line (peak_open_files): what a real client holds, against the caps.
func (s *Session) fileOpened() (closed func()) {
	n := s.openFiles.Add(1)
	for {
		peak := s.peakFiles.Load()
		if n <= peak || s.peakFiles.CompareAndSwap(peak, n) {
			break
		}
	}
	var once sync.Once
	return func() { once.Do(func() { s.openFiles.Add(-1) }) }
}

// SetCloser replaces how the session is closed (by default its connection
// is closed): a frontend that can say goodbye in its protocol does so.
func (s *Session) SetCloser(fn func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closer = fn
}

// SetGoodbye sets how the frontend tells the client why its session ends
// before CloseWith closes it: an FTP 421 reply, a line on an SSH
// channel's stderr. fn must return promptly whatever the client does (a
// client that reads nothing): bound its writes.
func (s *Session) SetGoodbye(fn func(message string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goodbye = fn
}

// CloseWith ends the session for reason, as Close does, after telling the
// client message through the frontend's goodbye (SetGoodbye), if it set
// one and the session was not already ending.
func (s *Session) CloseWith(reason, message string) error {
	s.mu.Lock()
	first := s.reason == ""
	if first {
		s.reason = reason
	}
	goodbye := s.goodbye
	s.mu.Unlock()
	if first && goodbye != nil && message != "" {
		goodbye(message)
	}
	return s.Close(reason)
}

// Close ends the session for reason (one of the Reason constants).
func (s *Session) Close(reason string) error {
	s.mu.Lock()
	if s.reason == "" {
		s.reason = reason
	}
	closer := s.closer
	s.mu.Unlock()
	return closer()
}

// CloseReason returns why the session ended or is ending; "" while open.
func (s *Session) CloseReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// SocketOptions reads the session's socket options from the kernel.
func (s *Session) SocketOptions() (SocketOptions, error) {
	if s.tcp == nil {
		return SocketOptions{}, errors.New("gateway: not a TCP connection")
	}
	return ReadSocketOptions(s.tcp)
}

// Logger returns the session's logger, which carries session, proto,
// remote and (once set) user.
func (s *Session) Logger() *slog.Logger { return s.log }

// SessionInfo is a snapshot of a session for the sessions view.
type SessionInfo struct {
	ID           string         `json:"id"`
	Protocol     string         `json:"protocol"`
	User         string         `json:"user,omitempty"`
	Remote       string         `json:"remote"`
	Local        string         `json:"local"`
	Parent       string         `json:"parent,omitempty"`
	Start        time.Time      `json:"start"`
	LastActivity time.Time      `json:"last_activity"`
	BytesIn      int64          `json:"bytes_in"`
	BytesOut     int64          `json:"bytes_out"`
	Op           string         `json:"op,omitempty"`
	Transfers    int            `json:"transfers"`
	Socket       *SocketOptions `json:"socket,omitempty"`
}

// Info returns a snapshot. A control session's bytes include those of its
// data connections.
func (s *Session) Info() SessionInfo {
	in := SessionInfo{
		ID: s.ID, Protocol: s.Protocol, User: s.User(), Remote: s.Remote.String(), Local: s.Local.String(),
		Start: s.Start, LastActivity: time.Unix(0, s.lastActivity.Load()),
		BytesIn: s.bytesIn.Load() + s.childIn.Load(), BytesOut: s.bytesOut.Load() + s.childOut.Load(),
		Transfers: int(s.transfers.Load()),
	}
	if s.Parent != nil {
		in.Parent = s.Parent.ID
	}
	if op := s.op.Load(); op != nil {
		in.Op = *op
	}
	if o, err := s.SocketOptions(); err == nil {
		in.Socket = &o
	}
	return in
}

// checkIdle runs when the idle timer fires: it closes a session silent
// for the idle timeout, or re-arms the timer for when it will have been
// (a transfer in progress re-arms it whole).
func (s *Session) checkIdle() {
	if s.transfers.Load() > 0 {
		s.timer.Reset(s.idle) // a transfer in progress is never idle
		return
	}
	silent := s.r.now().Sub(time.Unix(0, s.lastActivity.Load()))
	if silent < s.idle {
		s.timer.Reset(s.idle - silent)
		return
	}
	s.log.Info("closing idle session", "silent", silent.Round(time.Second))
	_ = s.Close(ReasonIdle)
}

// Registry tracks every live session. Its zero value is not usable: use
// newRegistry.
type Registry struct {
	log    *slog.Logger
	now    func() time.Time // the gateway's clock
	nextID atomic.Uint64

	// mu guards the fields below.
	mu       sync.Mutex
	limits   Limits
	sessions map[string]*Session
	byIP     map[netip.Addr]int
	byUser   map[string]int
	total    int
	draining bool
	onClose  []func(*Session)
}

func newRegistry(log *slog.Logger, limits Limits, now func() time.Time) *Registry {
	return &Registry{
		log:      log,
		now:      now,
		limits:   limits,
		sessions: make(map[string]*Session),
		byIP:     make(map[netip.Addr]int),
		byUser:   make(map[string]int),
	}
}

// SetLimits replaces the limits for new connections and logins.
func (r *Registry) SetLimits(l Limits) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.limits = l
}

// OnClose registers fn to run after each session is removed.
func (r *Registry) OnClose(fn func(*Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onClose = append(r.onClose, fn)
}

func addrIP(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// add registers a new session, or refuses it with a reason and an error
// wrapping ErrTooManyConnections (or ErrServerClosed while draining).
func (r *Registry) add(s *Session) (reason string, err error) {
	s.ip = addrIP(s.Remote)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return ReasonDrain, ErrServerClosed
	}
	if s.Parent != nil && r.sessions[s.Parent.ID] != s.Parent {
		return ReasonDataRefused, errors.New("gateway: data connection refused: its control session has ended")
	}
	if s.Parent == nil {
		if r.limits.Max > 0 && r.total >= r.limits.Max {
			return ReasonLimit, fmt.Errorf("%w: the gateway serves at most %d", ErrTooManyConnections, r.limits.Max)
		}
		if r.limits.PerIP > 0 && r.byIP[s.ip] >= r.limits.PerIP {
			return ReasonLimit, fmt.Errorf("%w: at most %d from %s", ErrTooManyConnections, r.limits.PerIP, s.ip)
		}
		r.total++
		r.byIP[s.ip]++
	}
	s.ID = strconv.FormatUint(r.nextID.Add(1), 10)
	s.log = s.log.With("session", s.ID) // under mu: Get, Sessions and remove see it
	r.sessions[s.ID] = s
	return "", nil
}

// setUser attaches the authenticated user, refusing the login if the user
// is at their connection limit.
func (r *Registry) setUser(s *Session, user string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := s.User(); old != "" {
		if old == user {
			return nil
		}
		r.byUser[old]--
	}
	if r.limits.PerUser > 0 && r.byUser[user] >= r.limits.PerUser {
		return fmt.Errorf("%w: at most %d for user %s", ErrTooManyConnections, r.limits.PerUser, user)
	}
	r.byUser[user]++
	s.user.Store(&user)
	s.log = s.log.With("user", user)
	return nil
}

// remove unregisters a closed session and runs the OnClose hooks.
func (r *Registry) remove(s *Session) {
	r.mu.Lock()
	if _, ok := r.sessions[s.ID]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.sessions, s.ID)
	if s.Parent == nil {
		r.total--
		if r.byIP[s.ip]--; r.byIP[s.ip] <= 0 {
			delete(r.byIP, s.ip)
		}
	} else {
		s.Parent.childIn.Add(s.bytesIn.Load())
		s.Parent.childOut.Add(s.bytesOut.Load())
	}
	if u := s.User(); u != "" {
		if r.byUser[u]--; r.byUser[u] <= 0 {
			delete(r.byUser, u)
		}
	}
	var children []*Session
	for _, c := range r.sessions {
		if c.Parent == s {
			children = append(children, c)
		}
	}
	hooks := r.onClose
	r.mu.Unlock()
	for _, c := range children {
		_ = c.Close(s.CloseReason())
	}
	// A data connection that ends while its control session is being
	// closed for a reason (its socket closed first, the frontend may
	// close the data connection before this removal reaches it) ends for
	// that reason.
	inherited := ReasonClosed
	if s.Parent != nil {
		inherited = cmp.Or(s.Parent.CloseReason(), ReasonClosed)
	}
	s.mu.Lock()
	s.closed = true
	if s.reason == "" {
		s.reason = inherited
	}
	s.mu.Unlock()
	for _, fn := range hooks {
		fn(s)
	}
}

// Get returns the live session with that ID.
func (r *Registry) Get(id string) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

// Lookup finds the live session whose connection has these addresses.
func (r *Registry) Lookup(local, remote net.Addr) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions {
		if s.Remote.String() == remote.String() && s.Local.String() == local.String() {
			return s, true
		}
	}
	return nil, false
}

// Sessions returns every live session, oldest first.
func (r *Registry) Sessions() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.ParseUint(out[i].ID, 10, 64)
		b, _ := strconv.ParseUint(out[j].ID, 10, 64)
		return a < b
	})
	return out
}

// Active counts the sessions at work: logged-in client sessions whose
// filesystem did something (an operation on a path, a file's read or
// write) within the last within, or has a path operation in progress (a
// hash, a recursive remove). Keepalives, NOOPs and connections that have
// not logged in (their handshakes and password checks) do not count, nor
// does a file held open in silence; an FTP data connection's transfer
// counts for its control session. It is what the Go runtime's Ps follow
// (internal/procs).
func (r *Registry) Active(within time.Duration) int {
	since := r.now().Add(-within).UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.sessions {
		if s.Parent == nil && s.user.Load() != nil && (s.lastWork.Load() >= since || s.pathOps.Load() > 0) {
			n++
		}
	}
	return n
}

// Len returns the number of live sessions, data connections included.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Kick closes a session (and so its data connections) as an operator
// asked.
func (r *Registry) Kick(id string) error {
	s, ok := r.Get(id)
	if !ok {
		return fmt.Errorf("%w %q", ErrNoSession, id)
	}
	s.log.Info("session kicked")
	return s.Close(ReasonKicked)
}
