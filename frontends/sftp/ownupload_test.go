package sftp_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests are about a truncating open of a path where the session
// has its own upload in progress: it replaces that upload, keeping its
// state, whatever stands on disk at the path (backend/agent openIn).

// TestMovedUploadAppendTrunc: an upload renamed over a link while open is
// that name to the session; an open of it with APPEND|TRUNC (written in
// place, not a new upload) must truncate the renamed upload, not follow
// the link still on disk: on sftp-server rl is the renamed file and rla is
// gone.
func TestMovedUploadAppendTrunc(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	if err := c.Symlink("rla", "/rl"); err != nil {
		t.Fatal(err)
	}
	f1, err := c.OpenFile("/rla", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f1.Write([]byte("old upload")); err != nil {
		t.Fatal(err)
	}
	if err := c.PosixRename("/rla", "/rl"); err != nil {
		t.Fatal(err)
	}
	f2, err := c.OpenFile("/rl", os.O_WRONLY|os.O_APPEND|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Write([]byte("NEW")); err != nil {
		t.Fatal(err)
	}
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	f1.Close()
	if fi, err := os.Lstat(filepath.Join(dir, "rl")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("rl after the saves: %v, %v; want a regular file (the renamed upload)", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "rla")); !os.IsNotExist(err) {
		t.Errorf("rla after the saves: %v; want none (renamed away; the link's target was never made)", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "rl")); err != nil || string(got) != "NEW" {
		t.Errorf("rl reads %q, %v; want NEW", got, err)
	}
}

// TestReopenTruncKeepsUploadMode: a truncating open of a path the session
// is uploading keeps the mode the session gave that upload, as open(2)
// with O_TRUNC keeps the inode's (here the old file on disk is 0600, the
// session's upload was chmodded 0644).
func TestReopenTruncKeepsUploadMode(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	disk := filepath.Join(e.UserDir("alice"), "m.txt")
	if err := os.WriteFile(disk, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	f1, err := c.OpenFile("/m.txt", os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Chmod("/m.txt", 0o644); err != nil {
		t.Fatal(err)
	}
	f2, err := c.OpenFile("/m.txt", os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := f2.Stat(); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("FSTAT of the second save: %v, %v; want 0644", fi.Mode(), err)
	}
	f2.Write([]byte("new"))
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	f1.Close()
	if fi, err := os.Stat(disk); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode on disk: %v, %v; want 0644", fi.Mode(), err)
	}
}

// TestMovedUploadKeepsXattrs: a save keeps the replaced file's user.*
// attributes (README); after the session renamed its save, a truncating
// open of the new name keeps them too, as open(2) with O_TRUNC keeps the
// inode's.
func TestMovedUploadKeepsXattrs(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	a := filepath.Join(dir, "xa")
	if err := os.WriteFile(a, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(a, "user.tag", []byte("v"), 0); err != nil {
		t.Skip("no user xattrs here:", err)
	}
	f1, err := c.OpenFile("/xa", os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PosixRename("/xa", "/xb"); err != nil {
		t.Fatal(err)
	}
	f2, err := c.OpenFile("/xb", os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	f2.Write([]byte("new"))
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	f1.Close()
	buf := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(dir, "xb"), "user.tag", buf); err != nil || string(buf[:n]) != "v" {
		t.Errorf("user.tag of xb: %q, %v; want v", buf[:max(n, 0)], err)
	}
}
