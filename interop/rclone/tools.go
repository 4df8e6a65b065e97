//go:build tools

// This file is never built. It keeps the rclone packages whose tests
// rclone_test.go runs (as "go test PACKAGE", in a subprocess) in go.mod and
// go.sum, so that "go mod tidy" does not drop them.
package rclone

import (
	_ "github.com/rclone/rclone/backend/ftp"
	_ "github.com/rclone/rclone/backend/sftp"
	_ "github.com/rclone/rclone/backend/webdav"
	_ "github.com/rclone/rclone/fstest"
	_ "github.com/rclone/rclone/fstest/fstests"
)
