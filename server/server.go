// Package server assembles a running gateway from a configuration: the
// gateway core, the embedded agents and a frontend for each configured
// listener. `upgate serve` is Run; tests start the same thing with Start.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"
	"github.com/spf13/pflag"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/frontends/ftp"
	"github.com/upgate/upgate/frontends/sftp"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
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

	// FTPAddr, FTPSAddr, SFTPAddr and AdminAddr are the listeners'
	// addresses; nil when off.
	FTPAddr, FTPSAddr, SFTPAddr, AdminAddr net.Addr

	admin   *http.Server
	started atomic.Bool // every frontend is listening

	ftp   *ftp.Server
	ftps  *ftp.Server // implicit FTPS
	sftp  *sftp.Server
	wg    sync.WaitGroup
	errMu sync.Mutex
	err   error
}

// Start builds the gateway from a validated config and starts serving on
// every configured listener. Stop it with Shutdown.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	gw, err := gateway.New(ctx, cfg, gateway.Options{Logger: log, Version: opts.Version, Filesystem: opts.Filesystem})
	if err != nil {
		return nil, err
	}
	s := &Server{Gateway: gw, cfg: cfg, log: log, opts: opts}
	if cfg.Listen.FTP != "" {
		if err := s.startFTP(false); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if cfg.Listen.FTPS != "" {
		if err := s.startFTP(true); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if cfg.Listen.SFTP != "" {
		if err := s.startSFTP(); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if cfg.Listen.Admin != "" {
		if err := s.startAdmin(); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	s.started.Store(true)
	if opts.ConfigPath != "" && opts.WatchInterval >= 0 {
		s.watch()
	}
	return s, nil
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
	if old.Listen != cfg.Listen || !reflect.DeepEqual(old.FTP, cfg.FTP) || !reflect.DeepEqual(old.SFTP, cfg.SFTP) {
		s.log.Warn("listen, ftp and sftp settings change only with a restart")
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

func (s *Server) startSFTP() error {
	c := s.cfg.SFTP
	keys, err := sftp.LoadHostKeys(c.HostKeys)
	if err != nil {
		return err
	}
	srv, err := sftp.New(s.Gateway, sftp.Config{
		HostKeys:           keys,
		KeepaliveInterval:  c.Keepalive.Interval,
		KeepaliveMaxMissed: c.Keepalive.MaxMissed,
		HandshakeTimeout:   c.HandshakeTimeout,
		MaxAuthTries:       c.MaxAuthTries,
		MaxChannels:        c.MaxChannels,
		ExecMaxFiles:       c.ExecMaxFiles,
		MaxHandles:         c.MaxHandles,
		Logger:             s.log,
	})
	if err != nil {
		return err
	}
	lis, err := s.Gateway.Listen(sftp.Protocol(), s.cfg.Listen.SFTP)
	if err != nil {
		return err
	}
	s.sftp, s.SFTPAddr = srv, lis.Addr()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(lis); err != nil {
			s.log.Error("SFTP frontend stopped", "err", err)
			s.setErr(err)
		}
	}()
	return nil
}

func (s *Server) startFTP(implicit bool) error {
	c := s.cfg.FTP
	fc := ftp.Config{PassivePorts: c.PassivePorts, PublicHost: c.PublicHost, TLSRequired: c.TLS.Required,
		DisableActiveMode: c.DisableActiveMode, CheckAlloSize: c.CheckAlloSize, Implicit: implicit, Logger: s.log,
		PassivePromiscuous: c.PassivePromiscuous, PassiveTimeout: c.PassiveTimeout, LoginTimeout: c.LoginTimeout}
	if n := passiveRangeSize(c.PassivePorts); n > 0 && n < s.cfg.Connections.MaxPerIP && !implicit {
		s.log.Warn("ftp.passive_ports holds fewer ports than connections.max_per_ip: one client address can hold them all",
			"passive_ports", c.PassivePorts, "ports", n, "max_per_ip", s.cfg.Connections.MaxPerIP)
	}
	if c.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			return fmt.Errorf("server: ftp.tls: %w", err)
		}
		fc.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	srv, err := ftp.New(s.Gateway, fc)
	if err != nil {
		return err
	}
	proto, addr := ftp.Protocol(), s.cfg.Listen.FTP
	if implicit {
		proto, addr = ftp.ImplicitProtocol(), s.cfg.Listen.FTPS
	}
	lis, err := s.Gateway.Listen(proto, addr)
	if err != nil {
		return err
	}
	if implicit {
		s.ftps, s.FTPSAddr = srv, lis.Addr()
	} else {
		s.ftp, s.FTPAddr = srv, lis.Addr()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(lis); err != nil {
			s.log.Error("FTP frontend stopped", "err", err)
			s.setErr(err)
		}
	}()
	return nil
}

// passiveRangeSize is the number of ports in "A-B", or 0.
func passiveRangeSize(r string) int {
	a, b, ok := strings.Cut(r, "-")
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if !ok || errA != nil || errB != nil || y < x {
		return 0
	}
	return y - x + 1
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
	if s.ftp != nil {
		s.ftp.Close()
	}
	if s.ftps != nil {
		s.ftps.Close()
	}
	if s.sftp != nil {
		s.sftp.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	s.wg.Wait()
	err = errors.Join(err, s.Gateway.Close())
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(err, s.err)
}
