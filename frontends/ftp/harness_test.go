package ftp_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a running gateway with the FTP frontend and one embedded agent
// (gwtest.Users log in, each to <Root>/<name>).
type env struct {
	*gwtest.Env
	Addr string // FTP control address, 127.0.0.1:port
}

// start runs a gateway with FTP on 127.0.0.1:0. edit, if non-nil, adjusts
// the config before it is validated. Everything stops in t.Cleanup.
func start(t testing.TB, edit func(*config.Config)) *env {
	t.Helper()
	e := gwtest.Start(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = config.PortRange{}
		if edit != nil {
			edit(cfg)
		}
	})
	return &env{Env: e, Addr: e.Srv.FTPAddr.String()}
}
