package ftp_test

import (
	"net"
	"testing"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/prototest"
)

// TestProtocolSuite runs the scenarios every frontend shares (rclone's
// ftp backend and curl) against plain FTP.
func TestProtocolSuite(t *testing.T) {
	prototest.Run(t, func(t *testing.T) prototest.Target {
		e := start(t, nil)
		host, port, err := net.SplitHostPort(e.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return prototest.Target{
			Env: e.Env, User: "alice", Password: gwtest.Users["alice"],
			Rclone:  map[string]string{"type": "ftp", "host": host, "port": port},
			URL:     "ftp://" + e.Addr,
			ModTime: true, // MFMT
			// Stream mode: the data connection's close ends an upload.
			EndIsClose: true,
		}
	})
}
