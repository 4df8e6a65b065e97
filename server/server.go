// Package server assembles a running gateway from a configuration: the
// gateway core, the embedded agents and a frontend for each configured
// listener. `upgate serve` is Run; tests start the same thing with Start.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"
	"github.com/spf13/pflag"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/internal/procs"
)

// Options configure Start. The zero value is usable.
type Options struct {
	// Logger receives every log line. Nil means slog.Default().
	Logger *slog.Logger
	// Version is reported by embedded agents.
	Version string
	// ConfigPath, if set, is the file the configuration came from: it is
	// watched, and Reload reads it again (with DefaultConfig when empty,
	// and the UPGATE_* environment and Flags on top, as config.Load
	// does).
	ConfigPath    string
	DefaultConfig []byte
	Flags         *pflag.FlagSet
	// WatchInterval is how often ConfigPath is checked for changes. Zero
	// means 2 s; negative turns watching off (SIGHUP still reloads).
	WatchInterval time.Duration
	// Filesystem, if non-nil, replaces the user's mounts at login: see
	// gateway.Options.Filesystem (tests).
	Filesystem func(ctx context.Context, user string) (afero.Fs, error)
}

// Server is a running gateway with its frontends.
type Server struct {
	Gateway *gateway.Gateway
	opts    Options
	log     *slog.Logger

	// cfgMu guards cfg, replaced by Reload.
	cfgMu sync.Mutex
	cfg   *config.Config

	stopWatch context.CancelFunc
	stopProcs func() // ends the CPU controller and waits for it; nil without one

	// FTPAddr, FTPSAddr, SFTPAddr and AdminAddr are those listeners'
	// addresses, nil when off; Addr has every frontend's.
	FTPAddr, FTPSAddr, SFTPAddr, AdminAddr net.Addr

	admin   *http.Server
	started atomic.Bool // every frontend is listening

	// running holds the frontends serving, by listener name (the
	// frontends table); written by Start only.
	running map[string]runningFrontend
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
}

// Start builds the gateway from a validated config and starts serving on
// every configured listener. Stop it with Shutdown.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.WithDefaults() // a Config built in code may leave them zero
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Version: opts.Version, Filesystem: opts.Filesystem})
	if err != nil {
		return nil, err
	}
	s := &Server{Gateway: gw, cfg: cfg, log: log, opts: opts, running: make(map[string]runningFrontend)}
	for _, l := range frontends() {
		if addr := l.addr(cfg.Listen); addr != "" {
			if err := s.startFrontend(l, addr); err != nil {
				s.Shutdown(context.Background())
				return nil, err
			}
		}
	}
	s.FTPAddr, s.FTPSAddr, s.SFTPAddr = s.Addr("ftp"), s.Addr("ftps"), s.Addr("sftp")
	if cfg.Listen.Admin != "" {
		if err := s.startAdmin(); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if cfg.CPU.Adaptive {
		s.startProcs()
	}
	s.started.Store(true)
	if opts.ConfigPath != "" && opts.WatchInterval >= 0 {
		s.watch()
	}
	return s, nil
}

// busyWithin is how recently a session must have worked on files to count
// as busy for the CPU controller (gateway.Registry.Active).
const busyWithin = time.Second

// startProcs runs the CPU controller (cpu.adaptive): as many Go Ps as
// sessions are busy, unless a GOMAXPROCS environment variable or a
// one-CPU runtime fixes them (procs.Follow). GOMAXPROCS is the process's:
// it assumes one Server per process, as `upgate serve` runs (tests that
// start several leave cpu.adaptive off; see internal/gwtest).
func (s *Server) startProcs() {
	registry := s.Gateway.Registry()
	s.stopProcs = procs.Follow(procs.Config{
		Busy:   func() int { return registry.Active(busyWithin) },
		Logger: s.log.With("component", "procs"),
	})
}

// Reload reads the configuration again and applies what can change
// without a restart: users, agents and connection limits. An invalid
// configuration is refused with a log line naming the key; the running one
// stays in force.
func (s *Server) Reload() error {
	cfg, err := config.Load(s.opts.ConfigPath, s.opts.DefaultConfig, s.opts.Flags)
	if err == nil {
		err = s.Gateway.Reload(cfg)
	}
	if err != nil {
		s.log.Error("configuration reload refused; the previous configuration stays in force", "file", s.opts.ConfigPath, "err", err)
		return err
	}
	s.cfgMu.Lock()
	old := s.cfg
	s.cfg = cfg
	s.cfgMu.Unlock()
	restart := old.Listen != cfg.Listen || old.CPU != cfg.CPU
	for _, l := range frontends() {
		restart = restart || !reflect.DeepEqual(l.settings(old), l.settings(cfg))
	}
	if restart {
		s.log.Warn("listen settings, cpu and each frontend's own (ftp, sftp, webdav) change only with a restart")
	}
	return nil
}

// watch reloads when the configuration file's content changes. It polls
// (content, not mtime) so that a Kubernetes ConfigMap's symlink swap is
// seen like any edit.
func (s *Server) watch() {
	interval := s.opts.WatchInterval
	if interval == 0 {
		interval = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	sum := func() [32]byte {
		b, err := os.ReadFile(s.opts.ConfigPath)
		if err != nil {
			return [32]byte{}
		}
		return sha256.Sum256(b)
	}
	last := sum()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if cur := sum(); cur != last {
				last = cur
				s.log.Info("configuration file changed", "file", s.opts.ConfigPath)
				_ = s.Reload()
			}
		}
	}()
}

func (s *Server) startAdmin() error {
	var token string
	if f := s.cfg.Admin.TokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("server: admin.token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return fmt.Errorf("server: admin.token_file: %s is empty", f)
		}
	}
	lis, err := net.Listen("tcp", s.cfg.Listen.Admin)
	if err != nil {
		return fmt.Errorf("server: listen admin on %s: %w", s.cfg.Listen.Admin, err)
	}
	if token == "" && !admin.LoopbackAddr(s.cfg.Listen.Admin) {
		// config.Validate refuses this too; a Config built in code may
		// not have been through it.
		return fmt.Errorf("server: admin.token_file: required when listen.admin %q is not a loopback address", s.cfg.Listen.Admin)
	}
	h := admin.NewHandler(s.Gateway, admin.Config{
		Token:  token,
		Ready:  func() bool { return s.started.Load() && s.Gateway.Ready() },
		Logger: s.log,
	})
	s.admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.AdminAddr = lis.Addr()
	if a, ok := lis.Addr().(*net.TCPAddr); ok {
		s.Gateway.ReservePort(a.Port) // FTP active mode must not reach it
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.admin.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
			s.setErr(err)
		}
	}()
	s.log.Info("serving admin HTTP", "addr", lis.Addr().String(), "token", token != "")
	return nil
}

func (s *Server) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	s.err = errors.Join(s.err, err)
}

// Shutdown drains (stops accepting; transfers in flight may finish until
// ctx ends), then closes everything and waits for the frontends. It
// returns an error if transfers had to be cut or a frontend failed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.started.Store(false) // not ready while draining
	if s.stopWatch != nil {
		s.stopWatch()
	}
	err := s.Gateway.Shutdown(ctx)
	for _, f := range s.running {
		f.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	s.wg.Wait()
	if s.stopProcs != nil {
		s.stopProcs()
	}
	err = errors.Join(err, s.Gateway.Close())
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(err, s.err)
}
