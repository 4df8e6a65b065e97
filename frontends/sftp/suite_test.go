package sftp_test

import (
	"net"
	"testing"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/prototest"
)

// TestProtocolSuite runs the scenarios every frontend shares (rclone's
// sftp backend and curl's libssh2) against SFTP.
func TestProtocolSuite(t *testing.T) {
	prototest.Run(t, func(t *testing.T) prototest.Target {
		e := start(t, nil)
		host, port, err := net.SplitHostPort(e.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return prototest.Target{
			Env: e.Env, User: "alice", Password: gwtest.Users["alice"],
			// shell_type none: no probe exec; rclone then hashes nothing
			// remotely, and check compares sizes.
			Rclone:    map[string]string{"type": "sftp", "host": host, "port": port, "shell_type": "none"},
			URL:       "sftp://" + e.Addr,
			CurlFlags: []string{"-k"}, // no known_hosts for the test's host key
			ModTime:   true,           // SETSTAT
		}
	})
}
