package sftp_test

// Tests named after a client's habit: what real clients (curl, OpenSSH's
// sftp, pkg/sftp's client as rclone and sshfs-like tools use it, paramiko)
// do that a server must get right, asserted on the agent's disk. Each
// pins a finding of issue 13 (filesystem fidelity) or 20 (the stale
// handle rclone's suite found).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// dialOpts is dial with client options (concurrent writes, packet size).
func dialOpts(t testing.TB, e *env, user string, opts ...sftp.ClientOption) *sftp.Client {
	t.Helper()
	conn, err := ssh.Dial("tcp", e.Addr, clientConfig(user, ssh.Password(gwtest.Users[user])))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(conn, opts...)
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

// noTemps fails the test if an upload temp file is left in the user's
// tree.
func noTemps(t testing.TB, e *env) {
	t.Helper()
	if temps := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(temps) > 0 {
		t.Errorf("upload temp files left: %q", temps)
	}
}

// TestCurlAppendSendsOffsetsFromZero: curl -a (libssh2) opens with APPEND
// and writes at offsets counted from 0; OpenSSH appends every write at the
// end. upgate used to add the file's size only to offsets below it, so
// 200,000 bytes appended to a 10-byte file left a 200,000-byte file.
func TestCurlAppendSendsOffsetsFromZero(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := start(t, nil)
	disk := filepath.Join(e.UserDir("alice"), "log.txt")
	head := []byte("0123456789")
	mustWrite(t, disk, head)
	tail := randomBytes(200_000)
	local := filepath.Join(t.TempDir(), "tail.bin")
	mustWrite(t, local, tail)
	command(t, time.Minute, nil, curl, "-sS", "-k", "-a", "-u", "alice:"+gwtest.Users["alice"],
		"-T", local, fmt.Sprintf("sftp://127.0.0.1:%s/log.txt", port(t, e)))
	got := mustRead(t, disk)
	if want := append(slices.Clone(head), tail...); sum256(got) != sum256(want) {
		t.Fatalf("after curl -a: %d bytes, want %d (the old 10 and the 200,000 appended, in order)", len(got), len(want))
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}

// TestPkgSFTPAppendWritesConcurrently: pkg/sftp's client (rclone's) opens
// with O_APPEND and sends its writes at offsets from 0, many in flight at
// once; they must land at the end in the order sent.
func TestPkgSFTPAppendWritesConcurrently(t *testing.T) {
	e := start(t, nil)
	c := dialOpts(t, e, "alice", sftp.UseConcurrentWrites(true), sftp.MaxPacketUnchecked(8<<10))
	disk := filepath.Join(e.UserDir("alice"), "app.log")
	mustWrite(t, disk, []byte("first line\n"))
	f, err := c.OpenFile("/app.log", os.O_WRONLY|os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	more := make([]byte, 1<<20)
	for i := range more {
		more[i] = byte(i / 8192) // every packet its own bytes
	}
	if _, err := f.Write(more); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRead(t, disk), append([]byte("first line\n"), more...); sum256(got) != sum256(want) {
		t.Fatalf("append: %d bytes on disk, want %d in order", len(got), len(want))
	}
}

// TestOpenSSHReputResumesAtTheEnd: OpenSSH's reput opens with APPEND and
// sends offsets from the remote file's size.
func TestOpenSSHReputResumesAtTheEnd(t *testing.T) {
	sftpBin := gwtest.RequireTool(t, "sftp")
	sshpass := gwtest.RequireTool(t, "sshpass")
	e := start(t, nil)
	data := randomBytes(300_017)
	local := filepath.Join(t.TempDir(), "big.bin")
	mustWrite(t, local, data)
	disk := filepath.Join(e.UserDir("alice"), "big.bin")
	mustWrite(t, disk, data[:100_000]) // an interrupted upload
	batch := filepath.Join(t.TempDir(), "batch")
	mustWrite(t, batch, []byte("reput "+local+" big.bin\n"))
	command(t, time.Minute, nil, sshpass, "-p", gwtest.Users["alice"], sftpBin, "-o", "BatchMode=no",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
		"-o", "PubkeyAuthentication=no", "-P", port(t, e), "-b", batch, "alice@127.0.0.1")
	if got := mustRead(t, disk); sum256(got) != sum256(data) {
		t.Fatalf("after reput: %d bytes, want the whole %d", len(got), len(data))
	}
}

// TestSSHFSCreateThenLstat is what sshfs does for every new file (git,
// rsync, tar, cp, editors): OPEN(CREAT), then LSTAT and FSTAT of what it
// made, writes, reads back, SETSTAT, and only later CLOSE (FUSE's release
// is asynchronous). The writing session sees its file at once; every
// other session sees nothing until the close.
func TestSSHFSCreateThenLstat(t *testing.T) {
	e := start(t, nil)
	a := dial(t, e, "alice")
	b := dial(t, e, "alice") // another session of the same user
	disk := filepath.Join(e.UserDir("alice"), "new.txt")

	f, err := a.OpenFile("/new.txt", os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := a.Lstat("/new.txt")
	if err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
		t.Fatalf("LSTAT right after OPEN(CREAT): %v, %v; want an empty file", fi, err)
	}
	if _, err := f.Write([]byte("hello sshfs")); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 11 { // FSTAT
		t.Errorf("FSTAT after a write: %v, %v; want size 11", fi, err)
	}
	if fi, err := a.Lstat("/new.txt"); err != nil || fi.Size() != 11 {
		t.Errorf("LSTAT after a write: %v, %v; want size 11", fi, err)
	}
	entries, err := a.ReadDir("/")
	if err != nil || !slices.ContainsFunc(entries, func(fi os.FileInfo) bool { return fi.Name() == "new.txt" && fi.Size() == 11 }) {
		t.Errorf("the writer's listing does not show new.txt with 11 bytes: %v", err)
	}
	r, err := a.Open("/new.txt")
	if err != nil {
		t.Fatalf("the writer opening its upload for reading: %v", err)
	}
	if got, _ := io.ReadAll(r); string(got) != "hello sshfs" {
		t.Errorf("the writer reads back %q", got)
	}
	r.Close()
	mtime := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := a.Chtimes("/new.txt", mtime, mtime); err != nil { // path SETSTAT
		t.Fatal(err)
	}
	if err := a.Chmod("/new.txt", 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := a.Lstat("/new.txt"); err != nil || !fi.ModTime().Equal(mtime) || fi.Mode().Perm() != 0o600 {
		t.Errorf("LSTAT after SETSTAT: %v, %v; want mtime %v, mode 0600 at once", fi.ModTime(), fi.Mode(), mtime)
	}

	// Atomic for the others: nothing on disk, nothing for session B.
	if _, err := os.Lstat(disk); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("new.txt on disk before the close: %v", err)
	}
	if _, err := b.Lstat("/new.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("another session sees the upload in progress: %v", err)
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, disk); string(got) != "hello sshfs" {
		t.Errorf("on disk after the close: %q", got)
	}
	if fi, err := os.Stat(disk); err != nil || !fi.ModTime().Equal(mtime) || fi.Mode().Perm() != 0o600 {
		t.Errorf("on disk after the close: %v, %v; want mtime %v, mode 0600", fi.ModTime(), fi.Mode(), mtime)
	}
	noTemps(t, e)
}

// TestSSHFSRemoveWhileOpen: rm of a file an editor or rsync still holds
// open (its CLOSE comes later): the file is gone, and the late CLOSE must
// not bring it back. The old file the upload was replacing goes too.
func TestSSHFSRemoveWhileOpen(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	mustWrite(t, filepath.Join(dir, "old.txt"), []byte("old"))
	for _, name := range []string{"fresh.txt", "old.txt"} {
		f, err := c.OpenFile("/"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("doomed")); err != nil {
			t.Fatal(err)
		}
		if err := c.Remove("/" + name); err != nil {
			t.Fatalf("REMOVE of %s, open for writing in this session: %v", name, err)
		}
		if _, err := c.Lstat("/" + name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LSTAT %s after REMOVE: %v", name, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("the late CLOSE: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists on disk after REMOVE and the late CLOSE: %v", name, err)
		}
	}
	noTemps(t, e)
}

// TestSSHFSRenameWhileOpen: rsync and sed -i write a temp name, then
// rename it over the target before sshfs sends the CLOSE. The upload
// takes its new name at once (LSTAT there sees it, the old name is gone)
// and commits under it.
func TestSSHFSRenameWhileOpen(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	mustWrite(t, filepath.Join(dir, "sub", "target.php"), []byte("<?php old"))
	f, err := c.OpenFile("/sub/.target.php.XXXXXX", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("<?php new")); err != nil {
		t.Fatal(err)
	}
	if err := c.PosixRename("/sub/.target.php.XXXXXX", "/sub/target.php"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Lstat("/sub/target.php"); err != nil || fi.Size() != 9 {
		t.Errorf("LSTAT of the new name before the close: %v, %v", fi, err)
	}
	if _, err := c.Lstat("/sub/.target.php.XXXXXX"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LSTAT of the old name after the rename: %v", err)
	}
	if got := mustRead(t, filepath.Join(dir, "sub", "target.php")); string(got) != "<?php old" {
		t.Errorf("others see %q before the close, want the old file", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "sub", "target.php")); string(got) != "<?php new" {
		t.Errorf("after the close: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub", ".target.php.XXXXXX")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temp name exists on disk: %v", err)
	}
	// A directory renamed with an upload open inside it carries it along.
	g, err := c.OpenFile("/sub/inner.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("inner"))
	if err := c.Rename("/sub", "/moved"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Lstat("/moved/inner.txt"); err != nil || fi.Size() != 5 {
		t.Errorf("LSTAT in the renamed directory: %v, %v", fi, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "moved", "inner.txt")); string(got) != "inner" {
		t.Errorf("after the close in the renamed directory: %q", got)
	}
	noTemps(t, e)
}

// TestFSTATOfAnUpload: FSTAT on an upload's handle answers the upload
// (pkg/sftp used to turn it into a Stat of the path: "no such file" for a
// new file, the old size after O_TRUNC).
func TestFSTATOfAnUpload(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	mustWrite(t, filepath.Join(e.UserDir("alice"), "big.txt"), make([]byte, 5000))
	for _, name := range []string{"/brand-new.txt", "/big.txt"} {
		f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != 3 {
			t.Errorf("FSTAT of the upload of %s: %v, %v; want size 3", name, fi, err)
		}
		f.Close()
	}
}

// TestSetstatTimesWhileOpenInPlace: a client that rewrites part of a file
// in place (no O_TRUNC) and sets its times while it is open sees the new
// times at once; a write after them moves the mtime, as on sftp-server,
// and times set after the last write survive the close.
func TestSetstatTimesWhileOpenInPlace(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	disk := filepath.Join(e.UserDir("alice"), "inplace.txt")
	mustWrite(t, disk, []byte("0123456789"))
	f, err := c.OpenFile("/inplace.txt", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("AB"), 2); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := c.Chtimes("/inplace.txt", mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Lstat("/inplace.txt"); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("LSTAT after SETSTAT of an open file: %v, %v; want %v at once", fi.ModTime(), err, mtime)
	}
	if _, err := f.WriteAt([]byte("YZ"), 8); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Lstat("/inplace.txt"); err != nil || fi.ModTime().Equal(mtime) {
		t.Errorf("LSTAT after a write that followed the times: %v, %v; want the write's mtime", fi.ModTime(), err)
	}
	mtime2 := mtime.Add(time.Hour)
	if err := c.Chtimes("/inplace.txt", mtime2, mtime2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, disk); string(got) != "01AB4567YZ" {
		t.Errorf("content %q", got)
	}
	if fi, err := os.Stat(disk); err != nil || !fi.ModTime().Equal(mtime2) {
		t.Errorf("mtime on disk after the close %v, %v; want %v", fi.ModTime(), err, mtime2)
	}
}

// TestOpenSSHModes: OpenSSH's sftp sends the local file's permissions in
// OPEN and MKDIR's mode in its attributes; chmod keeps the sticky bit and
// never sets setuid or setgid.
func TestOpenSSHModes(t *testing.T) {
	sftpBin := gwtest.RequireTool(t, "sftp")
	sshpass := gwtest.RequireTool(t, "sshpass")
	e := start(t, nil)
	dir := e.UserDir("alice")
	tmp := t.TempDir()
	local := filepath.Join(tmp, "secret.php")
	mustWrite(t, local, []byte("<?php"))
	if err := os.Chmod(local, 0o640); err != nil {
		t.Fatal(err)
	}
	batch := filepath.Join(tmp, "batch")
	mustWrite(t, batch, []byte("mkdir private\nchmod 700 private\nput "+local+" secret.php\n"+
		"mkdir shared\nchmod 1777 shared\nput "+local+" suid.php\nchmod 4755 suid.php\n"))
	command(t, time.Minute, nil, sshpass, "-p", gwtest.Users["alice"], sftpBin, "-o", "BatchMode=no",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "PreferredAuthentications=password",
		"-o", "PubkeyAuthentication=no", "-P", port(t, e), "-b", batch, "alice@127.0.0.1")
	for name, want := range map[string]os.FileMode{
		"private": os.ModeDir | 0o700, "secret.php": 0o640, "shared": os.ModeDir | os.ModeSticky | 0o777, "suid.php": 0o755,
	} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}

	// MKDIR with a mode in its attributes (pkg/sftp's client sends none,
	// so the request is raw).
	c := dial(t, e, "alice")
	if err := c.MkdirAll("/x"); err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", e.Addr, clientConfig("alice", ssh.Password(gwtest.Users["alice"])))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := newRawSFTP(t, conn)
	const fxpMkdir = 14
	body := binary.BigEndian.AppendUint32(sshString(nil, "/x/d700"), attrPermissions)
	typ, data := raw.call(fxpMkdir, binary.BigEndian.AppendUint32(body, 0o700))
	raw.ok("MKDIR with mode 0700", typ, data)
	if fi, err := os.Lstat(filepath.Join(dir, "x", "d700")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("MKDIR 0700 made %v, %v", fi.Mode(), err)
	}
}

// TestAtimeApartFromMtime: a client that sets atime and mtime apart
// (rsync --atimes, paramiko's utime) reads both back as set.
func TestAtimeApartFromMtime(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	mustWrite(t, filepath.Join(e.UserDir("alice"), "t.txt"), []byte("x"))
	atime, mtime := time.Unix(1_000_000_000, 0), time.Unix(1_100_000_000, 0)
	if err := c.Chtimes("/t.txt", atime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat("/t.txt")
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*sftp.FileStat)
	if st.Atime != uint32(atime.Unix()) || st.Mtime != uint32(mtime.Unix()) {
		t.Errorf("STAT answers atime %d mtime %d, want %d and %d", st.Atime, st.Mtime, atime.Unix(), mtime.Unix())
	}
	if st.UID != uint32(os.Getuid()) {
		t.Errorf("STAT answers uid %d, want the agent's %d", st.UID, os.Getuid())
	}
}

// TestNamesAnyBytes: a name that is not valid UTF-8 (an old Latin-1
// tree, rclone's FsEncoding test) crosses every layer as bytes, and a
// directory holding one made inside the container lists.
func TestNamesAnyBytes(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	bad := "caf\xe9 \xff\xfe.txt"
	f, err := c.Create("/" + bad)
	if err != nil {
		t.Fatalf("create %q: %v", bad, err)
	}
	f.Write([]byte("latin1"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, bad)); string(got) != "latin1" {
		t.Errorf("on disk as %q: %q", bad, got)
	}
	mustWrite(t, filepath.Join(dir, "made-in-container", "\xc3\x28-invalid"), []byte("x"))
	entries, err := c.ReadDir("/made-in-container")
	if err != nil || len(entries) != 1 || entries[0].Name() != "\xc3\x28-invalid" {
		t.Fatalf("listing a directory with an invalid UTF-8 name: %v, %v", entries, err)
	}
	if err := c.Rename("/"+bad, "/renamed \xff"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "renamed \xff")); err != nil {
		t.Error(err)
	}
	if err := c.Remove("/renamed \xff"); err != nil {
		t.Fatal(err)
	}
	// The error for a missing one is valid UTF-8 (paramiko decodes it).
	_, err = c.Stat("/missing \xff")
	var se *sftp.StatusError
	if !errors.As(err, &se) && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stat of a missing invalid name: %v", err)
	}
}

// TestAbandonedWriteHandle is rclone's FsPutError habit: an upload whose
// reader fails is abandoned without CLOSE, the connection is reused, and
// the same path is uploaded and then set, renamed and removed. Path
// operations act on the committed file at once; the stale handle never
// captures them, and its late CLOSE brings nothing back (issue 20).
func TestAbandonedWriteHandle(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	if err := c.Mkdir("/d"); err != nil {
		t.Fatal(err)
	}
	h1, err := c.OpenFile("/d/p", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	// Abandoned: no CLOSE. The same path again, cleanly.
	h2, err := c.OpenFile("/d/p", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	h2.Write([]byte("complete"))
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "d", "p")); string(got) != "complete" {
		t.Fatalf("after the second upload: %q", got)
	}
	mtime := time.Date(2011, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := c.Chtimes("/d/p", mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "d", "p")); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("Chtimes did not reach the committed file: %v, %v", fi.ModTime(), err)
	}
	if err := c.Rename("/d/p", "/d/q"); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(dir, "d", "q")); string(got) != "complete" {
		t.Errorf("after the rename: q holds %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "d", "p")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("p after the rename: %v", err)
	}
	if err := c.Remove("/d/q"); err != nil {
		t.Fatal(err)
	}
	noTemps(t, e)
	if err := c.RemoveDirectory("/d"); err != nil {
		t.Fatalf("rmdir of a directory that lists empty: %v", err)
	}
	// The late close of the abandoned handle: nothing comes back.
	_ = h1.Close()
	for _, p := range []string{"d", "d/p", "d/q"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists after the abandoned handle's close: %v", p, err)
		}
	}
	noTemps(t, e)

	// rclone's own clean-up: the failed upload's path removed by REMOVE
	// while its handle is still open: gone, and gone after the close.
	h3, err := c.OpenFile("/r", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	h3.Write([]byte("5120 bytes then an error"))
	if err := c.Remove("/r"); err != nil {
		t.Fatalf("REMOVE of the abandoned upload's path: %v", err)
	}
	_ = h3.Close()
	if _, err := os.Lstat(filepath.Join(dir, "r")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("r exists after REMOVE and the close: %v", err)
	}
	noTemps(t, e)
}

// TestAbandonedHandleKeepsSavesAtomic: an abandoned handle follows the
// save that superseded its upload (View.supersede), and, once that save
// has committed, holds the committed file open. A later save of the path
// is still atomic: the agent, which writes a truncating open in place
// when the session writes the same file through another handle
// (session.writesInPlace), leaves a handle that followed a save to the
// View, which takes it along with the new upload.
func TestAbandonedHandleKeepsSavesAtomic(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	disk := filepath.Join(e.UserDir("alice"), "a")
	h1, err := c.OpenFile("/a", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h1.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	defer h1.Close() // abandoned
	for _, save := range []string{"complete", "third save"} {
		h, err := c.OpenFile("/a", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Write([]byte(save)); err != nil {
			t.Fatal(err)
		}
		if save == "third save" {
			if got := mustRead(t, disk); string(got) != "complete" {
				t.Errorf("while the third save is open the container sees %q, want the last committed %q", got, "complete")
			}
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk); string(got) != save {
			t.Fatalf("after the save: %q, want %q", got, save)
		}
	}
}

// TestFollowerOfInPlaceSaveKeepsSavesAtomic: an abandoned handle that
// followed a save written in place (through a hard link's writer, or
// APPEND|TRUNC) holds a plain handle on the file; a later save of the
// path is still atomic (a review).
func TestFollowerOfInPlaceSaveKeepsSavesAtomic(t *testing.T) {
	for _, via := range []string{"hardlink", "append-trunc"} {
		t.Run(via, func(t *testing.T) {
			e := start(t, nil)
			c := dial(t, e, "alice")
			disk := filepath.Join(e.UserDir("alice"), "a")
			save := func(flag int, data string) *sftp.File {
				t.Helper()
				h, err := c.OpenFile("/a", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|flag)
				if err != nil {
					t.Fatal(err)
				}
				if data != "" {
					if _, err := h.Write([]byte(data)); err != nil {
						t.Fatal(err)
					}
				}
				return h
			}
			h1 := save(0, "partial")
			defer h1.Close() // abandoned (rclone's FsPutError)
			if err := save(0, "complete").Close(); err != nil {
				t.Fatal(err)
			}
			// One save in place, h1 following it.
			switch via {
			case "hardlink":
				if err := c.Link("/a", "/h"); err != nil {
					t.Fatal(err)
				}
				w, err := c.OpenFile("/h", os.O_WRONLY)
				if err != nil {
					t.Fatal(err)
				}
				if err := save(0, "in place").Close(); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			case "append-trunc":
				if err := save(os.O_APPEND, "in place").Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got := mustRead(t, disk); string(got) != "in place" {
				t.Fatalf("after the in-place save: %q", got)
			}
			// No handle of the session writes /a in place now but the
			// abandoned follower: the next save is atomic.
			h := save(0, "next")
			if got := mustRead(t, disk); string(got) != "in place" {
				t.Errorf("while the next save is open the container sees %q, want the last committed %q", got, "in place")
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			if got := mustRead(t, disk); string(got) != "next" {
				t.Fatalf("after the save: %q, want %q", got, "next")
			}
		})
	}
}
