package server

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/frontends/ftp"
	"github.com/upgate/upgate/frontends/sftp"
	"github.com/upgate/upgate/frontends/webdav"
	"github.com/upgate/upgate/gateway"
)

// The gateway is every frontend's Gateway.
var (
	_ ftp.Gateway    = (*gateway.Gateway)(nil)
	_ sftp.Gateway   = (*gateway.Gateway)(nil)
	_ webdav.Gateway = (*gateway.Gateway)(nil)
)

// Frontend is a protocol server on listeners from the gateway's accept
// layer: ftp.Server, sftp.Server and webdav.Server.
type Frontend interface {
	// Serve serves lis until Close or the gateway's Shutdown, and then
	// returns nil once the goroutines it started are gone.
	Serve(lis net.Listener) error
	// Close stops accepting; live sessions are the gateway's to close.
	Close() error
}

// frontend is one row of the frontends table: a listener and the
// protocol served on it. Adding a protocol is a package under frontends/
// and a row here (with its keys in config).
type frontend struct {
	// name is the listener's key under listen (listen.<name>), and how
	// Addr and the logs name it.
	name string
	// addr picks the listener's address from the config; "" is off.
	addr func(config.Listen) string
	// settings picks the protocol's own config section, which changes
	// only with a restart (Reload warns).
	settings func(*config.Config) any
	// build makes the frontend and the Protocol its connections present
	// to the accept layer.
	build func(s *Server, cfg *config.Config) (Frontend, gateway.Protocol, error)
}

// frontends is the table Start serves, in start order.
func frontends() []frontend {
	ftpSettings := func(c *config.Config) any { return c.FTP }
	return []frontend{
		{name: "ftp", addr: func(l config.Listen) string { return l.FTP }, settings: ftpSettings, build: buildFTP(false)},
		{name: "ftps", addr: func(l config.Listen) string { return l.FTPS }, settings: ftpSettings, build: buildFTP(true)},
		{name: "sftp", addr: func(l config.Listen) string { return l.SFTP }, settings: func(c *config.Config) any { return c.SFTP }, build: buildSFTP},
		{name: "webdav", addr: func(l config.Listen) string { return l.WebDAV }, settings: func(c *config.Config) any { return c.WebDAV }, build: buildWebDAV},
	}
}

// runningFrontend is a frontend Start serves, and where.
type runningFrontend struct {
	Frontend
	addr net.Addr
}

// Addr returns the address of the listener called name (listen.<name>:
// "ftp", "ftps", "sftp", "webdav"), or nil when it is off.
func (s *Server) Addr(name string) net.Addr {
	if f, ok := s.running[name]; ok {
		return f.addr
	}
	return nil
}

// startFrontend builds one row's frontend, listens on addr through the
// accept layer and serves it in a goroutine that s.wg waits for.
func (s *Server) startFrontend(f frontend, addr string) error {
	fe, proto, err := f.build(s, s.cfg)
	if err != nil {
		return err
	}
	lis, err := s.Gateway.Listen(proto, addr)
	if err != nil {
		return err
	}
	s.running[f.name] = runningFrontend{Frontend: fe, addr: lis.Addr()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fe.Serve(lis); err != nil {
			s.log.Error("frontend stopped", "listener", f.name, "err", err)
			s.setErr(fmt.Errorf("server: %s frontend: %w", f.name, err))
		}
	}()
	return nil
}

func buildSFTP(s *Server, cfg *config.Config) (Frontend, gateway.Protocol, error) {
	c := cfg.SFTP
	keys, err := sftp.LoadHostKeys(c.HostKeys)
	if err != nil {
		return nil, gateway.Protocol{}, err
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
	return srv, sftp.Protocol(), err
}

func buildWebDAV(s *Server, cfg *config.Config) (Frontend, gateway.Protocol, error) {
	c := cfg.WebDAV
	wc := webdav.Config{HeaderTimeout: c.HeaderTimeout, ProgressTimeout: cfg.Connections.ProgressTimeout, Logger: s.log}
	var err error
	if wc.TLS, err = serverTLS("webdav.tls", c.TLS.Cert, c.TLS.Key); err != nil {
		return nil, gateway.Protocol{}, err
	}
	srv, err := webdav.New(s.Gateway, wc)
	return srv, webdav.Protocol(wc.TLS != nil), err
}

// buildFTP builds the FTP frontend: plain with explicit FTPS (AUTH TLS)
// when ftp.tls is set, or implicit FTPS.
func buildFTP(implicit bool) func(*Server, *config.Config) (Frontend, gateway.Protocol, error) {
	return func(s *Server, cfg *config.Config) (Frontend, gateway.Protocol, error) {
		c := cfg.FTP
		fc := ftp.Config{PassivePorts: c.PassivePorts, PublicHost: c.PublicHost, TLSRequired: c.TLS.Required,
			DisableActiveMode: c.DisableActiveMode, CheckAlloSize: c.CheckAlloSize, Implicit: implicit, Logger: s.log,
			PassivePromiscuous: c.PassivePromiscuous, PassiveTimeout: c.PassiveTimeout, LoginTimeout: c.LoginTimeout}
		if n := c.PassivePorts.Len(); n > 0 && n < cfg.Connections.MaxPerIP && !implicit {
			s.log.Warn("ftp.passive_ports holds fewer ports than connections.max_per_ip: one client address can hold them all",
				"passive_ports", c.PassivePorts, "ports", n, "max_per_ip", cfg.Connections.MaxPerIP)
		}
		var err error
		if fc.TLS, err = serverTLS("ftp.tls", c.TLS.Cert, c.TLS.Key); err != nil {
			return nil, gateway.Protocol{}, err
		}
		srv, err := ftp.New(s.Gateway, fc)
		if err != nil {
			return nil, gateway.Protocol{}, err
		}
		if implicit {
			return srv, ftp.ImplicitProtocol(), nil
		}
		return srv, ftp.Protocol(), nil
	}
}

// serverTLS is a frontend's TLS config from the PEM files of the config
// section key (TLS 1.2 at least); nil when no certificate is set.
func serverTLS(key, certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: %s: %w", key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
