package webdav_test

import (
	"testing"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/prototest"
)

// TestProtocolSuite runs the scenarios every frontend shares (rclone's
// webdav backend and curl) against WebDAV over HTTPS. rclone's vendor
// owncloud sends X-OC-Mtime with each upload (vendor other keeps no
// mtimes at all).
func TestProtocolSuite(t *testing.T) {
	prototest.Run(t, func(t *testing.T) prototest.Target {
		e := startTLS(t, nil)
		return prototest.Target{
			Env: e.Env, User: "alice", Password: gwtest.Users["alice"],
			Rclone:      map[string]string{"type": "webdav", "url": e.URL + "/", "vendor": "owncloud"},
			RcloneFlags: []string{"--ca-cert", e.CA},
			URL:         e.URL,
			CurlFlags:   []string{"--cacert", e.CA},
			ModTime:     true, // X-OC-Mtime
		}
	})
}
