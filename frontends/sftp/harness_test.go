package sftp_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a running gateway with the SFTP frontend and one embedded agent
// (gwtest.Users log in, each to <Root>/<name>).
type env struct {
	*gwtest.Env
	Addr string // SSH address, 127.0.0.1:port
}

// start runs a gateway with SFTP on 127.0.0.1:0, its host key generated
// next to the agent's root. edit, if non-nil, adjusts the config before
// it is validated. Everything stops in t.Cleanup.
func start(t testing.TB, edit func(*config.Config)) *env {
	t.Helper()
	e := gwtest.Start(t, func(cfg *config.Config) {
		root := cfg.Agents[gwtest.Agent].Root
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(root, "..", filepath.Base(root)+"-hostkey-ed25519")}
		if edit != nil {
			edit(cfg)
		}
	})
	return &env{Env: e, Addr: e.Srv.SFTPAddr.String()}
}

// dial logs in as user with password over real SSH and returns a pkg/sftp
// client.
func dial(t testing.TB, e *env, user string) *sftp.Client {
	t.Helper()
	conf := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(gwtest.Users[user])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	conn, err := ssh.Dial("tcp", e.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}
