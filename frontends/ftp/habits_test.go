package ftp_test

// Tests named after a client's habit (lftp mirror --delete, curl's LIST,
// python ftplib's MLSD and raw commands), asserted on the agent's disk.
// Each pins a finding of issue 13 (filesystem fidelity).

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestLftpMirrorDeleteRemovesOnlyTheLink: a site with Laravel's
// storage:link (site/storage -> ../keep), mirrored from a local tree
// without storage/: lftp mirror -R --delete must remove the link, never
// what it points to. upgate used to list the link as a directory, and
// lftp deleted through it.
func TestLftpMirrorDeleteRemovesOnlyTheLink(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	e := start(t, nil)
	dir := e.UserDir("alice")
	putFile(t, e, "alice", "keep/avatar.png", []byte("precious"), 0o644)
	putFile(t, e, "alice", "keep/upload.pdf", []byte("also precious"), 0o644)
	putFile(t, e, "alice", "site/index.php", []byte("<?php old"), 0o644)
	if err := os.Symlink("../keep", filepath.Join(dir, "site", "storage")); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	writeTreeFile(t, local, "index.php", []byte("<?php new content"))
	lftp(t, false, lftpOpen(e, "set ftp:ssl-allow no; ")+fmt.Sprintf("mirror -R --delete --no-perms %s /site", local))

	for name, want := range map[string]string{"keep/avatar.png": "precious", "keep/upload.pdf": "also precious", "site/index.php": "<?php new content"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s after the mirror: %q, %v; want %q", name, b, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "site", "storage")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link site/storage after mirror --delete: %v, want it removed", err)
	}
}

// TestCurlListShowsLinks: curl's LIST (and every client that parses ls -l)
// sees links as vsftpd shows them: "l" and "name -> target", a dangling
// one included.
func TestCurlListShowsLinks(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := start(t, nil)
	dir := e.UserDir("alice")
	putDir(t, e, "alice", "site/sub", 0o755)
	for link, target := range map[string]string{"site/storage": "../keep", "site/cur": "sub", "site/gone": "nowhere"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := net.SplitHostPort(e.Addr)
	out := mustCli(t, curl, "-sS", "-u", "alice:"+gwtest.Users["alice"], fmt.Sprintf("ftp://127.0.0.1:%s/site/", port))
	for _, want := range []string{" cur -> sub", " gone -> nowhere", " storage -> ../keep"} {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasSuffix(strings.TrimRight(l, "\r"), want) {
				line = l
			}
		}
		if !strings.HasPrefix(line, "lrwxrwxrwx ") {
			t.Errorf("LIST has no link line ending %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "\ndrwx") && !strings.HasPrefix(out, "drwx") {
		t.Errorf("LIST lost the directory sub:\n%s", out)
	}
}

// TestFtplibSymlinksAndStat: python ftplib's MLSD reads a link's type as
// OS.unix=symlink (what lftp, proftpd and basic-ftp recognise), STAT of a
// directory lists it over the control connection without junk, EPSV ALL
// is answered as RFC 2428 says, and names that are not valid UTF-8 cross
// as bytes.
func TestFtplibSymlinksAndStat(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	putFile(t, e, "alice", "d/file.txt", []byte("x"), 0o644)
	if err := os.Symlink("file.txt", filepath.Join(dir, "d", "ln")); err != nil {
		t.Fatal(err)
	}
	res := runFtplib(t, e, "habits")
	if typ := res["mlsd_type"]; typ != "OS.unix=symlink" {
		t.Errorf("MLSD type of a link: %v, want OS.unix=symlink", typ)
	}
	stat, _ := res["stat"].(string)
	if strings.Contains(stat, "%s") || !strings.Contains(stat, "ln -> file.txt") || !strings.HasPrefix(stat, "212") {
		t.Errorf("STAT /d:\n%s", stat)
	}
	if res["epsv_all"] != "200" || res["pasv_after"] != "550" {
		t.Errorf("EPSV ALL: %v, then PASV: %v; want 200 then 550", res["epsv_all"], res["pasv_after"])
	}
	if b, err := os.ReadFile(filepath.Join(dir, "caf\xe9 \xff.txt")); err != nil || string(b) != "latin1" {
		t.Errorf("STOR of an invalid UTF-8 name: %q, %v", b, err)
	}
	if names, _ := res["nlst"].([]any); len(names) != 1 || names[0] != hex.EncodeToString([]byte("/caf\xe9 \xff.txt")) {
		t.Errorf("NLST of an invalid UTF-8 name (hex): %v", res["nlst"])
	}
}

// TestAlloAnnouncedSizeIsChecked: with ftp.check_allo_size, a client that
// announces the size with ALLO (lftp with ftp:use-allo) has an upload that
// ends early refused and not committed, where FTP's own end of data (the
// data connection's close) cannot tell. Without it ALLO is ignored, as
// vsftpd ignores it.
func TestAlloAnnouncedSizeIsChecked(t *testing.T) {
	plain := ctlLogin(t, start(t, nil), "alice")
	plain.must(200, "ALLO 100")
	plain.put([]byte("short"), "STOR allo.txt")

	e := start(t, func(cfg *config.Config) { cfg.FTP.CheckAlloSize = true })
	c := ctlLogin(t, e, "alice")
	c.must(200, "ALLO 10")
	if code, msg := c.tryTransfer([]byte("short"), "STOR allo.txt"); code != 451 {
		t.Errorf("STOR of 5 bytes after ALLO 10: %d %s, want 451", code, msg)
	}
	if _, err := os.Stat(filepath.Join(e.UserDir("alice"), "allo.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the short upload was committed: %v", err)
	}
	c.must(200, "ALLO 10")
	c.put([]byte("0123456789"), "STOR allo.txt")
	wantFile(t, filepath.Join(e.UserDir("alice"), "allo.txt"), []byte("0123456789"))
	// ALLO is for the next STOR only.
	c.put([]byte("abc"), "STOR allo.txt")
	wantFile(t, filepath.Join(e.UserDir("alice"), "allo.txt"), []byte("abc"))
	// RFC 959's "ALLO n R m" announces n; an ALLO that is not its syntax
	// is ignored (202, as vsftpd) and announces nothing.
	c.must(200, "ALLO 10 R 512")
	if code, msg := c.tryTransfer([]byte("short"), "STOR allo.txt"); code != 451 {
		t.Errorf("STOR of 5 bytes after ALLO 10 R 512: %d %s, want 451", code, msg)
	}
	for _, bad := range []string{"ALLO", "ALLO abc", "ALLO -1", "ALLO 10 X 5"} {
		c.must(202, "%s", bad)
		c.put([]byte("de"), "STOR allo.txt")
		wantFile(t, filepath.Join(e.UserDir("alice"), "allo.txt"), []byte("de"))
	}
}
