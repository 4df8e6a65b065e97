// Package rclone runs rclone's own backend integration suites (fstests, the
// generic filesystem conformance suite every rclone backend passes) against
// upgate's SFTP, FTP and WebDAV frontends: the test builds upgate from
// this repository, serves a temporary directory through its embedded
// agent, and runs "go test github.com/rclone/rclone/backend/sftp -remote
// upgatesftp:" and the FTP and WebDAV equivalents (WebDAV once per vendor
// setting whose requests differ). It is a module of its own so that the main module
// does not depend on rclone; run it with
//
//	cd interop/rclone && go test ./...
package rclone
