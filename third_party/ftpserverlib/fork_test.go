package ftpserver

// Tests of the upgate fork's additions: MLSx facts and OPTS MLST
// (mlsx_facts.go), MainDriverExtensionReplyCode, the client-aware passive
// wrapper, the active-address check, LoginTimeout, Wait and Reply, PASV's
// lazy port draws and reply line splitting.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secsy/goftp"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/require"
)

func TestForkMLSTFacts(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	ftpUpload(t, client, createTemporaryFile(t, 10), "file")

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	rc, rsp, err := raw.SendCommand("FEAT")
	req.NoError(err)
	req.Equal(StatusSystemStatus, rc)
	req.Contains(rsp, " MLST Type*;Size*;Modify*;UNIX.mode*;\n")

	rc, rsp, err = raw.SendCommand("MLST file")
	req.NoError(err)
	req.Equal(StatusFileOK, rc, rsp)
	lines := strings.Split(rsp, "\n")
	req.Len(lines, 3)
	req.Regexp(`^ Type=file;Size=10;Modify=\d{14};UNIX\.mode=0[0-7]{3}; /file$`, lines[1])

	// Unknown facts are ignored, case is not significant, the reply names
	// the facts now in use, in the server's order.
	rc, rsp, err = raw.SendCommand("OPTS MLST unix.MODE;bogus;type;")
	req.NoError(err)
	req.Equal(StatusOK, rc)
	req.Equal("MLST OPTS Type;UNIX.mode;", rsp)

	rc, rsp, err = raw.SendCommand("FEAT")
	req.NoError(err)
	req.Equal(StatusSystemStatus, rc)
	req.Contains(rsp, " MLST Type*;Size;Modify;UNIX.mode*;\n")

	req.NoError(os.Chmod(server.driver.(*TestServerDriver).serverDir+"/file", os.ModeSetuid|0o751))

	_, rsp, err = raw.SendCommand("MLST /file")
	req.NoError(err)
	req.Equal(" Type=file;UNIX.mode=4751; /file", strings.Split(rsp, "\n")[1])

	rc, rsp, err = raw.SendCommand("OPTS MLST")
	req.NoError(err)
	req.Equal(StatusOK, rc)
	req.Equal("MLST OPTS", rsp)

	_, rsp, err = raw.SendCommand("MLST file")
	req.NoError(err)
	// No facts: the entry is the space that ends the (empty) fact list and
	// the path, after the space that starts every line of the reply.
	req.Equal("  /file", strings.Split(rsp, "\n")[1])
}

func TestForkUnixMode(t *testing.T) {
	for mode, want := range map[os.FileMode]string{
		0o644:                                  "0644",
		os.ModeDir | 0o755:                     "0755",
		os.ModeSetuid | 0o755:                  "4755",
		os.ModeSetgid | os.ModeSticky | 0o1777: "3777",
		0:                                      "0000",
	} {
		require.Equal(t, want, unixMode(mode), "mode %v", mode)
	}
}

// replyCodeDriver answers 451 for a missing file and 421 for a refused
// login, so the tests see the driver's codes replace the library's.
type replyCodeDriver struct {
	TestServerDriver
	calls []int
}

func (d *replyCodeDriver) ReplyCode(_ ClientContext, err error, defaultCode int) int {
	d.calls = append(d.calls, defaultCode)

	switch {
	case errors.Is(err, errBadUserNameOrPassword):
		return StatusServiceNotAvailable
	case errors.Is(err, os.ErrNotExist):
		return StatusLocalError
	}

	return defaultCode
}

func TestForkReplyCode(t *testing.T) {
	req := require.New(t)
	driver := &replyCodeDriver{}
	driver.Init()
	server := NewTestServerWithDriver(t, driver)

	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	for _, cmd := range []string{"SIZE missing", "MDTM missing", "DELE missing", "MLST missing", "MFMT 20200101000000 missing", "RNFR missing"} {
		rc, rsp, err := raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusLocalError, rc, "%s: %s", cmd, rsp)
		req.Contains(rsp, "missing", cmd)
	}

	// A driver error the extension leaves alone keeps the library's code.
	rc, _, err := raw.SendCommand("MKD dir")
	req.NoError(err)
	req.Equal(StatusPathCreated, rc)
	rc, rsp, err := raw.SendCommand("MKD dir")
	req.NoError(err)
	req.Equal(StatusActionNotTaken, rc, rsp)

	// Login: the driver's code, then the connection closes as upstream.
	bad, err := goftp.DialConfig(goftp.Config{User: authUser, Password: "wrong"}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(bad.Close()) }()

	_, err = bad.OpenRawConn()
	req.Error(err)
	req.Contains(err.Error(), "421")
}

func TestForkFEATHash(t *testing.T) {
	req := require.New(t)
	server := NewTestServerWithTestDriver(t, &TestServerDriver{Settings: &Settings{EnableHASH: true}})
	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	_, rsp, err := raw.SendCommand("FEAT")
	req.NoError(err)
	req.Contains(rsp, "\n HASH CRC32;MD5;SHA-1;SHA-256*;SHA-512;\n")

	_, _, err = raw.SendCommand("OPTS HASH MD5")
	req.NoError(err)
	_, rsp, err = raw.SendCommand("FEAT")
	req.NoError(err)
	req.Contains(rsp, "\n HASH CRC32;MD5*;SHA-1;SHA-256;SHA-512;\n")
}

func TestForkLongLine(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	conn, err := net.DialTimeout("tcp", server.Addr(), 5*time.Second)
	req.NoError(err)

	defer func() { req.NoError(conn.Close()) }()

	req.NoError(conn.SetDeadline(time.Now().Add(10 * time.Second)))
	reader := bufio.NewReader(conn)
	line, err := reader.ReadString('\n')
	req.NoError(err)
	req.Equal("220 TEST Server\r\n", line)

	// 20 KiB: answered and survived.
	_, err = conn.Write([]byte("NOOP " + strings.Repeat("x", 20<<10) + "\r\nNOOP\r\n"))
	req.NoError(err)
	line, err = reader.ReadString('\n')
	req.NoError(err)
	req.Equal("500 Command line too long (more than 4096 bytes)\r\n", line)
	line, err = reader.ReadString('\n')
	req.NoError(err)
	req.Equal("200 OK\r\n", line)

	// Past 64 KiB without a line end: disconnected.
	_, _ = conn.Write([]byte(strings.Repeat("x", 80<<10)))
	_, err = reader.ReadString('\n')
	req.Error(err)
}

// linkInfo is a FileInfo that knows its link target and owner, as
// upgate's listings do.
type linkInfo struct {
	name, target string
	mode         os.FileMode
}

func (l linkInfo) Name() string       { return l.name }
func (l linkInfo) Size() int64        { return int64(len(l.target)) }
func (l linkInfo) Mode() os.FileMode  { return l.mode }
func (l linkInfo) ModTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
func (l linkInfo) IsDir() bool        { return l.mode.IsDir() }
func (l linkInfo) Sys() any           { return nil }
func (l linkInfo) LinkTarget() string { return l.target }
func (l linkInfo) Nlink() uint64      { return 2 }
func (l linkInfo) Uid() uint32        { return 33 }
func (l linkInfo) Gid() uint32        { return 44 }

func TestForkLISTLines(t *testing.T) {
	for mode, want := range map[os.FileMode]string{
		0o644:                                     "-rw-r--r--",
		os.ModeDir | 0o755:                        "drwxr-xr-x",
		os.ModeDir | os.ModeSticky | 0o1777:       "drwxrwxrwt",
		os.ModeDir | os.ModeSticky | 0o770:        "drwxrwx--T",
		os.ModeSymlink | 0o777:                    "lrwxrwxrwx",
		os.ModeSetuid | os.ModeSetgid | 0o755:     "-rwsr-sr-x",
		os.ModeSetuid | 0o644:                     "-rwSr--r--",
		os.ModeNamedPipe | 0o600:                  "prw-------",
		os.ModeDevice | os.ModeCharDevice | 0o666: "crw-rw-rw-",
	} {
		if got := lsMode(mode); got != want {
			t.Errorf("lsMode(%v) = %q, want %q", mode, got, want)
		}
	}

	c := &clientHandler{connectedAt: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)}
	line := c.fileStat(linkInfo{name: "storage", target: "../keep", mode: os.ModeSymlink | 0o777})
	want := "lrwxrwxrwx    2 33       44                  7 Jan  2 03:04 storage -> ../keep"
	if line != want {
		t.Errorf("LIST line\n got %q\nwant %q", line, want)
	}
	// A dangling link lists the same way: the target is the link's content.
	line = c.fileStat(linkInfo{name: "gone", target: "nowhere", mode: os.ModeSymlink | 0o777})
	if !strings.HasPrefix(line, "lrwxrwxrwx") || !strings.HasSuffix(line, " gone -> nowhere") {
		t.Errorf("dangling link listed as %q", line)
	}
}

func TestForkMLSxSymlinkType(t *testing.T) {
	c := &clientHandler{}
	c.mlsxSelected.Store(uint32(mlsxAllFacts))
	var b strings.Builder
	require.NoError(t, c.writeMLSxEntry(&b, linkInfo{name: "storage", target: "../keep", mode: os.ModeSymlink | 0o777}, "storage"))
	require.Equal(t, "Type=OS.unix=symlink;Size=7;Modify=20260102030405;UNIX.mode=0777; storage\r\n", b.String())
}

func TestForkSTATDirectory(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	ftpUpload(t, client, createTemporaryFile(t, 10), "file")

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	rc, rsp, err := raw.SendCommand("STAT /")
	req.NoError(err)
	req.Equal(StatusDirectoryStatus, rc, rsp)
	req.NotContains(rsp, "%s")
	req.Regexp(`(?m)^ -[-rwx]{9} +1 ftp +ftp +10 .* file$`, rsp)
}

func TestForkEPSVAll(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	rc, _, err := raw.SendCommand("PASV")
	req.NoError(err)
	req.Equal(StatusEnteringPASV, rc)

	rc, rsp, err := raw.SendCommand("EPSV ALL")
	req.NoError(err)
	req.Equal(StatusOK, rc, rsp)

	for _, cmd := range []string{"PASV", "PORT 127,0,0,1,200,10", "EPRT |1|127.0.0.1|51210|"} {
		rc, rsp, err = raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusActionNotTaken, rc, "%s after EPSV ALL: %s", cmd, rsp)
	}

	rc, rsp, err = raw.SendCommand("EPSV")
	req.NoError(err)
	req.Equal(StatusEnteringEPSV, rc, rsp)
}

// forkRaw is a raw control connection for the fork's tests.
type forkRaw struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

func forkDial(t *testing.T, addr string, login bool) *forkRaw {
	t.Helper()

	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)

	r := &forkRaw{t: t, nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { _ = r.tp.Close() })

	_, _, err = r.tp.ReadResponse(StatusServiceReady)
	require.NoError(t, err)

	if login {
		r.expect("USER "+authUser, StatusUserOK)
		r.expect("PASS "+authPass, StatusUserLoggedIn)
	}

	return r
}

func (r *forkRaw) cmd(line string) (int, string) {
	r.t.Helper()
	require.NoError(r.t, r.nc.SetDeadline(time.Now().Add(10*time.Second)))
	require.NoError(r.t, r.tp.PrintfLine("%s", line))

	code, msg, err := r.tp.ReadResponse(0)
	require.NoError(r.t, err, line)

	return code, msg
}

func (r *forkRaw) expect(line string, want int) string {
	r.t.Helper()

	code, msg := r.cmd(line)
	require.Equal(r.t, want, code, "%s: %s", line, msg)

	return msg
}

// epsvPort sends EPSV and returns the announced port.
func (r *forkRaw) epsvPort() string {
	r.t.Helper()

	msg := r.expect("EPSV", StatusEnteringEPSV)
	i, j := strings.Index(msg, "(|||"), strings.LastIndex(msg, "|)")
	require.True(r.t, i >= 0 && j > i, msg)

	return msg[i+4 : j]
}

// clientWrapperDriver records which client each passive listener was
// wrapped for, and refuses active-mode addresses below port 1024.
type clientWrapperDriver struct {
	TestServerDriver
	mu        sync.Mutex
	wrappedBy map[string]ClientContext // listener port -> client
	failWrap  bool
	failed    []net.Listener
}

func (d *clientWrapperDriver) WrapClientPassiveListener(cc ClientContext, listener net.Listener) (net.Listener, error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	if d.failWrap {
		d.failed = append(d.failed, listener)

		return nil, errors.New("no passive listener for you")
	}

	_, port, _ := net.SplitHostPort(listener.Addr().String())
	d.wrappedBy[port] = cc

	return listener, nil
}

func (d *clientWrapperDriver) CheckActiveAddr(_ ClientContext, addr *net.TCPAddr) error {
	if addr.Port < 1024 {
		return fmt.Errorf("port %d is privileged", addr.Port)
	}

	return nil
}

// TestForkClientPassiveWrapper: the wrapper is told which client a
// passive listener is for (and the context-free wrapper is not called);
// a session holds one passive port at a time, PORT and EPRT included; a
// failed wrap closes the listener.
func TestForkClientPassiveWrapper(t *testing.T) {
	req := require.New(t)
	driver := &clientWrapperDriver{wrappedBy: make(map[string]ClientContext)}
	driver.Init()
	driver.errPassiveListener = errors.New("the context-free wrapper must not be called")
	server := NewTestServerWithDriver(t, driver)

	alice, bob := forkDial(t, server.Addr(), true), forkDial(t, server.Addr(), true)
	pa, pb := alice.epsvPort(), bob.epsvPort()

	driver.mu.Lock()
	ca, cb := driver.wrappedBy[pa], driver.wrappedBy[pb]
	driver.mu.Unlock()
	req.NotNil(ca)
	req.NotNil(cb)
	req.Equal(alice.nc.LocalAddr().String(), ca.RemoteAddr().String())
	req.Equal(bob.nc.LocalAddr().String(), cb.RemoteAddr().String())

	// Each EPSV releases the previous port before listening again.
	host, _, err := net.SplitHostPort(server.Addr())
	req.NoError(err)

	ports := []string{pa}
	for range 5 {
		ports = append(ports, alice.epsvPort())
	}

	for _, p := range ports[:len(ports)-1] {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, p), 5*time.Second); err == nil {
			_ = c.Close()

			req.Failf("port still open", "port %s of an earlier EPSV still accepts connections", p)
		}
	}

	// So does PORT/EPRT: upstream left the passive listener open.
	last := ports[len(ports)-1]
	alice.expect("EPRT |1|127.0.0.1|40000|", StatusOK)

	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, last), 5*time.Second); err == nil {
		_ = c.Close()

		req.Failf("port still open", "passive port %s still accepts connections after EPRT", last)
	}

	// The driver refuses an address: 501 with its reason.
	code, msg := alice.cmd("EPRT |1|127.0.0.1|22|")
	req.Equal(StatusSyntaxErrorParameters, code)
	req.Contains(msg, "port 22 is privileged")
	code, msg = alice.cmd("PORT 127,0,0,1,0,80")
	req.Equal(StatusSyntaxErrorParameters, code)
	req.Contains(msg, "port 80 is privileged")

	// A failed wrap: 421, and the listener is closed.
	driver.mu.Lock()
	driver.failWrap = true
	driver.mu.Unlock()

	code, msg = bob.cmd("EPSV")
	req.Equal(StatusServiceNotAvailable, code)
	req.Contains(msg, "no passive listener for you")

	driver.mu.Lock()
	failed := driver.failed
	driver.mu.Unlock()
	req.Len(failed, 1)

	_, err = failed[0].Accept()
	req.ErrorIs(err, net.ErrClosed)
}

// TestForkLoginTimeout: a connection that does not log in within
// LoginTimeout gets 421 and is closed, NOOPs or not; a logged-in one is
// not bound by it.
func TestForkLoginTimeout(t *testing.T) {
	req := require.New(t)
	server := NewTestServerWithTestDriver(t, &TestServerDriver{Settings: &Settings{LoginTimeout: 500 * time.Millisecond}})

	idle := forkDial(t, server.Addr(), false)
	in := forkDial(t, server.Addr(), true)
	start := time.Now()

	var (
		code int
		msg  string
	)

	for i := 0; i < 200; i++ {
		req.NoError(idle.tp.PrintfLine("NOOP"))

		var err error

		code, msg, err = idle.tp.ReadResponse(0)
		req.NoError(err)

		if code != StatusOK {
			break
		}

		time.Sleep(50 * time.Millisecond)
	}

	req.Equal(StatusServiceNotAvailable, code, msg)
	req.Contains(msg, "Login timeout")
	req.Less(time.Since(start), 5*time.Second, "the login timeout did not bound a NOOPing client")

	_, _, err := idle.tp.ReadResponse(0)
	req.Error(err, "the connection stays open after the login timeout")

	// The logged-in client is still served past the login timeout.
	time.Sleep(time.Until(start.Add(time.Second)))
	in.expect("NOOP", StatusOK)
}

func TestForkVsftpdCommands(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	dir := server.driver.(*TestServerDriver).serverDir
	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	ftpUpload(t, client, createTemporaryFile(t, 10), "file")
	req.NoError(os.Symlink("file", dir+"/ln"))
	req.NoError(os.Mkdir(dir+"/sub", 0o755))

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	rc, rsp, err := raw.SendCommand("HELP")
	req.NoError(err)
	req.Equal(StatusHelpMessage, rc, rsp)
	req.Contains(rsp, " STOR\n")
	req.NotContains(rsp, "XRSQ") // not implemented: not listed

	rc, _, err = raw.SendCommand("STRU F")
	req.NoError(err)
	req.Equal(StatusOK, rc)
	rc, _, err = raw.SendCommand("STRU R")
	req.NoError(err)
	req.Equal(StatusNotImplementedParam, rc)

	rc, rsp, err = raw.SendCommand("FEAT")
	req.NoError(err)
	req.Equal(StatusSystemStatus, rc)
	req.Contains(rsp, "\n PASV\n")
	req.Contains(rsp, "\n TVFS\n")

	// MDTM with a time sets it (vsftpd's mdtm_write).
	rc, rsp, err = raw.SendCommand("MDTM 20040109113320 file")
	req.NoError(err)
	req.Equal(StatusFileStatus, rc, rsp)
	fi, err := os.Stat(dir + "/file")
	req.NoError(err)
	req.True(fi.ModTime().Equal(time.Date(2004, 1, 9, 11, 33, 20, 0, time.UTC)), "mtime %v", fi.ModTime())
	rc, rsp, err = raw.SendCommand("MDTM file")
	req.NoError(err)
	req.Equal("20040109113320", rsp, rc)

	// MDTM of a directory is refused, as vsftpd and SIZE refuse it; its
	// time can still be set.
	for _, cmd := range []string{"MDTM sub", "MDTM /", "MDTM /sub/"} {
		rc, rsp, err = raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusActionNotTaken, rc, "%s: %s", cmd, rsp)
	}

	rc, rsp, err = raw.SendCommand("MDTM 20040109113320 sub")
	req.NoError(err)
	req.Equal(StatusFileStatus, rc, rsp)
	fi, err = os.Stat(dir + "/sub")
	req.NoError(err)
	req.True(fi.ModTime().Equal(time.Date(2004, 1, 9, 11, 33, 20, 0, time.UTC)), "mtime %v", fi.ModTime())

	// LIST of a link lists the link; NLST names as the client spelled them.
	list := func(cmd string) string {
		dcGetter, err := raw.PrepareDataConn()
		req.NoError(err)
		rc, rsp, err := raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusFileStatusOK, rc, rsp)
		dc, err := dcGetter()
		req.NoError(err)
		b, err := io.ReadAll(dc)
		req.NoError(err)
		rc, _, err = raw.ReadResponse()
		req.NoError(err)
		req.Equal(StatusClosingDataConn, rc)

		return string(b)
	}
	req.Regexp(`^lrwxrwxrwx .* ln\r\n$`, list("LIST /ln"))
	// A link whose target is missing too, and STAT of a link (patch 32).
	req.NoError(os.Symlink("nowhere", dir+"/dang"))
	req.Regexp(`^lrwxrwxrwx .* dang\r\n$`, list("LIST /dang"))
	req.Equal("/dang\r\n", list("NLST /dang"))
	// A link in a loop of links (its Stat is ELOOP) lists as vsftpd's
	// does too (TestFTPRandom seed 261).
	req.NoError(os.Symlink("self", dir+"/self"))
	req.Regexp(`^lrwxrwxrwx .* self\r\n$`, list("LIST /self"))
	req.Equal("/self\r\n", list("NLST /self"))
	for _, name := range []string{"dang", "ln", "self"} {
		rc, rsp, err = raw.SendCommand("STAT /" + name)
		req.NoError(err)
		req.Equal(StatusFileStatus, rc, rsp)
		req.Regexp(`(?m)^ lrwxrwxrwx .* `+name+`$`, rsp)
	}
	rc, rsp, err = raw.SendCommand("STAT /dang/")
	req.NoError(err)
	req.Equal(StatusFileActionNotTaken, rc, rsp)
	req.Equal("/sub/../file\r\n", list("NLST /sub/../file"))
	nlst := list("NLST /")
	req.Contains(nlst, "/file\r\n")
	req.Contains(nlst, "/sub\r\n")
	req.NotContains(list("NLST"), "/")
}

// LstatIfPossible lets the fork's listings show a link as a link with the
// test driver too (upstream's test driver embeds only afero.Fs).
func (driver *TestClientDriver) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	if l, ok := driver.Fs.(afero.Lstater); ok {
		return l.LstatIfPossible(name)
	}

	fi, err := driver.Stat(name)

	return fi, false, err
}

// pagingDriver lists through OpenDir and counts the pages asked for.
type pagingDriver struct {
	*TestClientDriver
	mu    sync.Mutex
	pages int
}

func (d *pagingDriver) OpenDir(name string) (afero.File, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}

	return &countingDir{File: f, d: d}, nil
}

type countingDir struct {
	afero.File
	d *pagingDriver
}

func (c *countingDir) Readdir(n int) ([]os.FileInfo, error) {
	c.d.mu.Lock()
	c.d.pages++
	c.d.mu.Unlock()

	return c.File.Readdir(n)
}

func TestForkListingPageByPage(t *testing.T) {
	req := require.New(t)
	driver := &TestServerDriver{Debug: false}
	var paging *pagingDriver
	driver.AuthProvider = func(user, pass string) (ClientDriver, error) {
		paging = &pagingDriver{TestClientDriver: NewTestClientDriver(driver)}

		return paging, nil
	}
	server := NewTestServerWithTestDriver(t, driver)
	const n = 2000

	req.NoError(os.Mkdir(driver.serverDir+"/big", 0o755))

	for i := range n {
		req.NoError(os.WriteFile(fmt.Sprintf("%s/big/f%04d", driver.serverDir, i), nil, 0o644))
	}

	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	for _, cmd := range []string{"LIST /big", "MLSD /big", "NLST /big"} {
		dcGetter, err := raw.PrepareDataConn()
		req.NoError(err)
		rc, rsp, err := raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusFileStatusOK, rc, rsp)
		dc, err := dcGetter()
		req.NoError(err)
		b, err := io.ReadAll(dc)
		req.NoError(err)
		rc, _, err = raw.ReadResponse()
		req.NoError(err)
		req.Equal(StatusClosingDataConn, rc)
		req.Len(strings.Split(strings.TrimSpace(string(b)), "\r\n"), n, cmd)
	}

	paging.mu.Lock()
	defer paging.mu.Unlock()
	// Three listings of 2,000 entries, 512 a page: at least 4 pages each.
	req.GreaterOrEqual(paging.pages, 12, "pages read")

	rc, rsp, err := raw.SendCommand("LIST /missing")
	req.NoError(err)
	req.Equal(StatusFileActionNotTaken, rc, "an error before the transfer opens: %s", rsp)
}

// blockingClientDriver's OpenFile waits for release: a transfer stuck in
// the driver.
type blockingClientDriver struct {
	*TestClientDriver
	entered chan struct{}
	release chan struct{}
}

func (d *blockingClientDriver) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	close(d.entered)
	<-d.release

	return d.TestClientDriver.OpenFile(name, flag, perm)
}

// TestForkWaitClients: Wait returns once every client's command loop and
// the transfer goroutine it started have ended, not while a client is
// connected, nor while its transfer is still in the driver after its
// control connection closed.
func TestForkWaitClients(t *testing.T) {
	req := require.New(t)
	blocking := &blockingClientDriver{entered: make(chan struct{}), release: make(chan struct{})}
	driver := &TestServerDriver{}
	driver.AuthProvider = func(user, pass string) (ClientDriver, error) {
		if user != authUser || pass != authPass {
			return nil, errBadUserNameOrPassword
		}

		blocking.TestClientDriver = NewTestClientDriver(driver)

		return blocking, nil
	}
	server := NewTestServerWithTestDriver(t, driver)

	idle := forkDial(t, server.Addr(), true)
	busy := forkDial(t, server.Addr(), true)
	busy.epsvPort()
	require.NoError(t, busy.tp.PrintfLine("RETR file"))

	select {
	case <-blocking.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("RETR never reached the driver")
	}

	// (No client arrives meanwhile; the cleanup stops the server.)
	waited := make(chan struct{})

	go func() {
		server.Wait()
		close(waited)
	}()

	notYet := func(why string) {
		t.Helper()
		select {
		case <-waited:
			t.Fatalf("Wait returned %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}

	notYet("while two clients are connected")
	idle.expect("QUIT", StatusClosingControlConn)
	req.NoError(busy.tp.Close())
	notYet("while a transfer is in the driver")
	close(blocking.release)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the transfer left the driver")
	}
}

// TestForkReplyFromOutside: Reply writes a whole reply from another
// goroutine than the client's command loop (a 421 before the server
// closes the connection): the client reads it as the answer to its next
// command; while another reply holds the writer, Reply gives up after its
// timeout with ErrReplyBusy.
func TestForkReplyFromOutside(t *testing.T) {
	req := require.New(t)
	driver := &TestServerDriver{}
	server := NewTestServerWithTestDriver(t, driver)
	raw := forkDial(t, server.Addr(), true)
	raw.expect("NOOP", StatusOK)

	driver.clientMU.Lock()
	req.Len(driver.Clients, 1)
	cc := driver.Clients[0]
	driver.clientMU.Unlock()
	replier, ok := cc.(ClientContextReplier)
	req.True(ok, "the library's ClientContext is a ClientContextReplier")

	req.NoError(replier.Reply(StatusServiceNotAvailable, "Session ended: your password changed.\nLog in again.", time.Second))
	req.NoError(cc.Close())
	code, msg := raw.cmd("NOOP")
	req.Equal(StatusServiceNotAvailable, code)
	req.Equal("Session ended: your password changed.\nLog in again.", msg)
	_, err := raw.tp.ReadLine()
	req.Error(err, "the connection is closed after the reply")

	// A reply being written holds the writer; Reply waits its timeout.
	h, ok := cc.(*clientHandler)
	req.True(ok)
	h.lockReplies(0)
	start := time.Now()
	req.ErrorIs(h.Reply(StatusServiceNotAvailable, "late", 50*time.Millisecond), ErrReplyBusy)
	req.Less(time.Since(start), 10*time.Second) // bounded (a hang would fail here)
	h.unlockReplies()
}

// TestForkReplyOverTLS: after AUTH TLS, Reply writes through the TLS
// layer: the client reads the 421 inside the TLS session.
func TestForkReplyOverTLS(t *testing.T) {
	req := require.New(t)
	driver := &TestServerDriver{TLS: true}
	server := NewTestServerWithTestDriver(t, driver)
	raw := forkDial(t, server.Addr(), false)
	raw.expect("AUTH TLS", StatusAuthAccepted)

	tc := tls.Client(raw.nc, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's own certificate
	req.NoError(tc.SetDeadline(time.Now().Add(10 * time.Second)))
	req.NoError(tc.Handshake())
	tp := textproto.NewConn(tc)

	for _, c := range []struct {
		line string
		code int
	}{{"USER " + authUser, StatusUserOK}, {"PASS " + authPass, StatusUserLoggedIn}} {
		req.NoError(tp.PrintfLine("%s", c.line))
		_, _, err := tp.ReadResponse(c.code)
		req.NoError(err, c.line)
	}

	driver.clientMU.Lock()
	req.Len(driver.Clients, 1)
	cc := driver.Clients[0]
	driver.clientMU.Unlock()
	replier, ok := cc.(ClientContextReplier)
	req.True(ok)

	req.NoError(replier.Reply(StatusServiceNotAvailable, "Session ended: your key was removed.", time.Second))
	req.NoError(cc.Close())
	_, msg, err := tp.ReadResponse(StatusServiceNotAvailable)
	req.NoError(err)
	req.Equal("Session ended: your key was removed.", msg)
	_, err = tp.ReadLine()
	req.Error(err, "the connection is closed after the reply")
}

// scriptedPorts is a PasvPortGetter that hands out ports from a script
// and counts its draws.
type scriptedPorts struct {
	mu    sync.Mutex
	ports []int
	draws int
}

func (s *scriptedPorts) FetchNext() (int, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.draws >= len(s.ports) {
		return 0, 0, false
	}

	p := s.ports[s.draws]
	s.draws++

	return p, p, true
}

func (s *scriptedPorts) NumberAttempts() int { return 100 }

func (s *scriptedPorts) drawn() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.draws
}

// freeTCPPort is a loopback port nothing listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	return port
}

// waitBindable waits, at most 5 s, until each port can be listened on as
// PASV listens (every address): a port the kernel just gave a client
// connection, or descriptors a test before this one still holds while
// its connections close, would fail a PASV that this test expects to
// succeed.
func waitBindable(t *testing.T, ports ...int) {
	t.Helper()

	var err error

	for range 50 {
		err = nil

		for _, p := range ports {
			l, lerr := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p))
			if lerr != nil {
				err = lerr

				break
			}

			_ = l.Close()
		}

		if err == nil {
			return
		}

		time.Sleep(100 * time.Millisecond)
	}

	t.Fatalf("ports %v not free for 5 s: %v", ports, err)
}

// TestForkPASVDrawsLazily: PASV draws ports only until one listens. The
// first draw of a free port is the only one; a port already taken is
// drawn, skipped, and the next one announced; a repeated port is drawn
// again without a second listen. Upstream drew four times the range's
// size (400 draws here) before listening once.
func TestForkPASVDrawsLazily(t *testing.T) {
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)

	defer func() { _ = taken.Close() }()

	takenPort := taken.Addr().(*net.TCPAddr).Port

	// The script names ports by role; the free ones are chosen once the
	// session is up, so that neither its listener nor its connections
	// can hold them when PASV listens.
	const (
		isTaken = -1
		isFree  = -2
		isOther = -3
	)

	for _, tc := range []struct {
		name      string
		script    []int
		announced int
		draws     int
		multiplex bool
	}{
		{"free first", []int{isFree, isOther, isOther, isOther}, isFree, 1, false},
		{"taken first", []int{isTaken, isTaken, isOther, isFree}, isOther, 3, false},
		{"multiplexed, free first", []int{isFree, isOther, isOther, isOther}, isFree, 1, true},
		{"multiplexed, taken first", []int{isTaken, isTaken, isOther, isFree}, isOther, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports := &scriptedPorts{}
			driver := &TestServerDriver{Settings: &Settings{
				DefaultTransferType: TransferTypeBinary, PassiveTransferPortRange: ports,
				PassiveTransferPortMultiplexing: tc.multiplex,
			}}
			server := NewTestServerWithTestDriver(t, driver)
			raw := forkDial(t, server.Addr(), true)

			free, other := freeTCPPort(t), freeTCPPort(t)
			for other == free {
				other = freeTCPPort(t)
			}

			port := map[int]int{isTaken: takenPort, isFree: free, isOther: other}
			ports.mu.Lock()
			for _, role := range tc.script {
				ports.ports = append(ports.ports, port[role])
			}
			ports.mu.Unlock()
			waitBindable(t, free, other)

			msg := raw.expect("PASV", StatusEnteringPASV)
			i, j := strings.Index(msg, "("), strings.Index(msg, ")")
			require.True(t, i >= 0 && j > i, msg)

			var h1, h2, h3, h4, p1, p2 int
			_, err := fmt.Sscanf(msg[i+1:j], "%d,%d,%d,%d,%d,%d", &h1, &h2, &h3, &h4, &p1, &p2)
			require.NoError(t, err, msg)
			require.Equal(t, port[tc.announced], p1*256+p2, msg)
			require.Equal(t, tc.draws, ports.drawn())
		})
	}
}

// TestForkMessageLines: getMessageLines splits as bufio.ScanLines, which
// upstream ran, over edge cases and random messages of the bytes that
// matter.
func TestForkMessageLines(t *testing.T) {
	scan := func(message string) []string {
		lines := []string{}
		sc := bufio.NewScanner(strings.NewReader(message))

		for sc.Scan() {
			lines = append(lines, sc.Text())
		}

		if len(lines) == 0 {
			lines = append(lines, "")
		}

		return lines
	}
	messages := []string{"", "\n", "\r\n", "\r", "a", "a\n", "a\r\n", "a\r\r\n", "a\n\nb\n\n", "a\rb", "\n\n", "a\r\n\r\nb"}
	alphabet := "ab\r\n "
	state := uint32(1)

	for range 2000 {
		var b strings.Builder

		state = state*1664525 + 1013904223
		n := int(state>>24) % 12

		for range n {
			state = state*1664525 + 1013904223
			b.WriteByte(alphabet[int(state>>24)%len(alphabet)])
		}

		messages = append(messages, b.String())
	}

	for _, m := range messages {
		require.Equal(t, scan(m), getMessageLines(m), "%q", m)
	}

	// The Scanner stopped at a line over 64 KiB; every line is kept now.
	long := strings.Repeat("x", 70000)
	require.Equal(t, []string{"first", long, "last"}, getMessageLines("first\n"+long+"\r\nlast"))
}

// closeGateDriver's passive data connections each close only once their
// gate (from gates, in the order they were accepted) is closed.
type closeGateDriver struct {
	TestServerDriver
	gates chan chan struct{}
}

func (d *closeGateDriver) WrapClientPassiveListener(_ ClientContext, listener net.Listener) (net.Listener, error) {
	return &gatedListener{Listener: listener, gates: d.gates}, nil
}

type gatedListener struct {
	net.Listener
	gates chan chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}

	gate := make(chan struct{})
	l.gates <- gate

	return &gatedConn{Conn: conn, gate: gate}, nil
}

func (l *gatedListener) SetDeadline(t time.Time) error {
	return l.Listener.(*net.TCPListener).SetDeadline(t)
}

type gatedConn struct {
	net.Conn
	gate chan struct{}
}

func (c *gatedConn) Close() error {
	<-c.gate

	return c.Conn.Close()
}

// TestForkUploadRepliesBeforeClosing (patch 17): an upload that arrived
// whole is answered 226 while its data connection is still being closed,
// and the next command waits for the close; a download's 226 still waits
// for its close, which ends its data. The file holds what was sent.
func TestForkUploadRepliesBeforeClosing(t *testing.T) {
	req := require.New(t)
	driver := &closeGateDriver{gates: make(chan chan struct{}, 2)}
	driver.Init()
	server := NewTestServerWithDriver(t, driver)
	t.Cleanup(func() { // a failed assertion leaves no transfer held
		for {
			select {
			case gate := <-driver.gates:
				close(gate)
			default:
				return
			}
		}
	})
	host, _, err := net.SplitHostPort(server.Addr())
	req.NoError(err)

	ctl := forkDial(t, server.Addr(), true)
	ctl.expect("TYPE I", StatusOK)

	data, err := net.DialTimeout("tcp", net.JoinHostPort(host, ctl.epsvPort()), 5*time.Second)
	req.NoError(err)
	ctl.expect("STOR gated.bin", StatusFileStatusOK)
	_, err = data.Write([]byte("sent whole\n"))
	req.NoError(err)
	req.NoError(data.(*net.TCPConn).CloseWrite())

	// The data connection's close is held: the 226 comes anyway.
	req.NoError(ctl.nc.SetDeadline(time.Now().Add(10 * time.Second)))
	code, msg, err := ctl.tp.ReadResponse(0)
	req.NoError(err, "no reply to the upload while its data connection's close is held")
	req.Equal(StatusClosingDataConn, code, msg)

	got, err := afero.ReadFile(driver.fs, "gated.bin")
	req.NoError(err)
	req.Equal("sent whole\n", string(got))

	// The next command waits for the close.
	req.NoError(ctl.tp.PrintfLine("NOOP"))
	req.NoError(ctl.nc.SetDeadline(time.Now().Add(300 * time.Millisecond)))
	_, _, err = ctl.tp.ReadResponse(0)
	var nerr net.Error
	req.True(errors.As(err, &nerr) && nerr.Timeout(), "NOOP answered while the upload's close was held: %v", err)
	close(<-driver.gates)
	req.NoError(ctl.nc.SetDeadline(time.Now().Add(10 * time.Second)))
	code, msg, err = ctl.tp.ReadResponse(0)
	req.NoError(err)
	req.Equal(StatusOK, code, msg)

	// A download's 226 comes after its close.
	data2, err := net.DialTimeout("tcp", net.JoinHostPort(host, ctl.epsvPort()), 5*time.Second)
	req.NoError(err)
	ctl.expect("RETR gated.bin", StatusFileStatusOK)
	req.NoError(ctl.nc.SetDeadline(time.Now().Add(300 * time.Millisecond)))
	_, _, err = ctl.tp.ReadResponse(0)
	req.True(errors.As(err, &nerr) && nerr.Timeout(), "a download answered before its data connection closed: %v", err)

	close(<-driver.gates)
	req.NoError(ctl.nc.SetDeadline(time.Now().Add(10 * time.Second)))
	code, msg, err = ctl.tp.ReadResponse(0)
	req.NoError(err)
	req.Equal(StatusClosingDataConn, code, msg)
	got, err = io.ReadAll(data2)
	req.NoError(err)
	req.Equal("sent whole\n", string(got))
	req.NoError(data.Close())
	req.NoError(data2.Close())
}

// forkList runs a listing command over raw's data connection and returns
// what came through it, requiring 150 then 226.
func forkList(t *testing.T, raw goftp.RawConn, cmd string) string {
	t.Helper()
	req := require.New(t)

	dcGetter, err := raw.PrepareDataConn()
	req.NoError(err)
	rc, rsp, err := raw.SendCommand(cmd)
	req.NoError(err)
	req.Equal(StatusFileStatusOK, rc, "%s: %s", cmd, rsp)
	dc, err := dcGetter()
	req.NoError(err)
	b, err := io.ReadAll(dc)
	req.NoError(err)
	rc, rsp, err = raw.ReadResponse()
	req.NoError(err)
	req.Equal(StatusClosingDataConn, rc, "%s: %s", cmd, rsp)

	return string(b)
}

func TestForkLISTOptions(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	dir := server.driver.(*TestServerDriver).serverDir
	req.NoError(os.Mkdir(dir+"/sub", 0o755))
	req.NoError(os.WriteFile(dir+"/sub/inner", []byte("inner"), 0o644))
	req.NoError(os.WriteFile(dir+"/sub/.dot", []byte("dot"), 0o644))
	req.NoError(os.Mkdir(dir+"/-t", 0o755))
	req.NoError(os.WriteFile(dir+"/-t/in-dash-t", []byte("x"), 0o644))

	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	// Any option word is options, not a path: LIST lists /sub, with its
	// dotfile and without . and .. whatever the options say.
	entry := `(?m)^-rw-r--r-- +1 ftp +ftp +5 .* inner\r$`
	for _, cmd := range []string{"LIST -t /sub", "LIST -1 /sub", "LIST -F /sub", "LIST -d /sub", "LIST -R /sub", "LIST -lt /sub", "LIST -a /sub"} {
		got := forkList(t, raw, cmd)
		req.Regexp(entry, got, cmd)
		req.Regexp(`(?m) \.dot\r$`, got, cmd)
		req.NotRegexp(`(?m) \.\.?\r$`, got, cmd)
		req.Equal(2, strings.Count(got, "\n"), "%s: %q", cmd, got)
	}

	req.Regexp(`(?m)^drwxr-xr-x .* sub\r$`, forkList(t, raw, "LIST -R"))
	req.Equal("/sub/.dot\r\n/sub/inner\r\n", sortedLines(forkList(t, raw, "NLST -t /sub")))
	req.Equal("/sub/.dot\r\n/sub/inner\r\n", sortedLines(forkList(t, raw, "NLST -1 /sub")))

	// NLST -l gives LIST's lines, as vsftpd's, for a file as for a directory.
	req.Regexp(entry, forkList(t, raw, "NLST -l /sub"))
	req.Regexp(`^-rw-r--r-- +1 ftp +ftp +5 .* inner\r\n$`, forkList(t, raw, "NLST -l /sub/inner"))
	req.Equal("/sub/inner\r\n", forkList(t, raw, "NLST -a /sub/inner"))

	// A directory named like an option is still listed (upstream's rule).
	req.Regexp(`(?m) in-dash-t\r$`, forkList(t, raw, "LIST -t"))

	// STAT takes the same options.
	for _, cmd := range []string{"STAT -la /sub", "STAT -t /sub"} {
		rc, rsp, err := raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(StatusDirectoryStatus, rc, "%s: %s", cmd, rsp)
		req.Regexp(`(?m)^ -rw-r--r-- +1 ftp +ftp +5 .* inner$`, rsp, cmd)
	}

	rc, rsp, err := raw.SendCommand("STAT -l /sub/inner")
	req.NoError(err)
	req.Equal(StatusFileStatus, rc, rsp)
	req.Regexp(`(?m)^ -rw-r--r-- .* inner$`, rsp)

	// Options and a missing path: the path's error, not a listing of ".".
	rc, _, err = raw.SendCommand("STAT -la /missing")
	req.NoError(err)
	req.Equal(StatusFileActionNotTaken, rc)
}

// sortedLines is s's lines sorted, each ending in "\r\n".
func sortedLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	sort.Strings(lines)

	return strings.Join(lines, "")
}

// TestForkDataConnErrors: a data connection the client resets is
// answered 426, as vsftpd answers it, and the upload is aborted; a
// driver's error during the transfer keeps its code.
func TestForkDataConnErrors(t *testing.T) {
	req := require.New(t)
	driver := &TestServerDriver{}
	server := NewTestServerWithTestDriver(t, driver)
	req.NoError(os.WriteFile(driver.serverDir+"/big.bin", bytes.Repeat([]byte("0123456789abcdef"), 2<<20), 0o644))

	raw := forkDial(t, server.Addr(), true)
	raw.expect("TYPE I", StatusOK)

	// start sends cmd with a passive data connection and returns the
	// connection once the server answered 150.
	start := func(cmd string) *net.TCPConn {
		port := raw.epsvPort()
		dc, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
		req.NoError(err)
		raw.expect(cmd, StatusFileStatusOK)

		return dc.(*net.TCPConn)
	}
	final := func() int {
		code, msg, err := raw.tp.ReadResponse(0)
		req.NoError(err)
		t.Log(code, msg)

		return code
	}
	reset := func(dc *net.TCPConn) {
		req.NoError(dc.SetLinger(0))
		req.NoError(dc.Close())
	}

	dc := start("STOR /reset.bin")
	_, err := dc.Write([]byte("partial data"))
	req.NoError(err)
	time.Sleep(100 * time.Millisecond) // the server reads it
	reset(dc)
	req.Equal(StatusTransferAborted, final())

	tf := driver.getTransferFile("/reset.bin")
	req.NotNil(tf)
	req.Error(tf.getErrTransfer(), "the upload is aborted")

	dc = start("RETR /big.bin")
	_, err = io.ReadFull(dc, make([]byte, 4096))
	req.NoError(err)
	reset(dc)
	req.Equal(StatusTransferAborted, final())

	// The file's own error: upstream's 550, not 426.
	dc = start("STOR /fail-to-write.bin")
	_, err = dc.Write([]byte("data"))
	req.NoError(err)
	req.NoError(dc.Close())
	req.Equal(StatusActionNotTaken, final())
}

// TestForkTrailingSlash: a path the client ends with "/" must be a
// directory, as POSIX resolves it (patch 21): a file so named is refused
// and left as it was; nothing is created; a link to a directory is
// followed by stat and open, not by DELE, RMD or a rename.
func TestForkTrailingSlash(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	dir := server.driver.(*TestServerDriver).serverDir
	req.NoError(os.WriteFile(dir+"/f", []byte("0123456789"), 0o644))
	req.NoError(os.Mkdir(dir+"/sub", 0o755))
	req.NoError(os.Mkdir(dir+"/d2", 0o755))
	req.NoError(os.WriteFile(dir+"/sub/inner", []byte("in"), 0o644))
	req.NoError(os.Symlink("sub", dir+"/lnd"))

	client, err := goftp.DialConfig(goftp.Config{User: authUser, Password: authPass}, server.Addr())
	req.NoError(err)

	defer func() { panicOnError(client.Close()) }()

	raw, err := client.OpenRawConn()
	req.NoError(err)

	defer func() { req.NoError(raw.Close()) }()

	send := func(cmd string, want int) {
		t.Helper()
		rc, rsp, err := raw.SendCommand(cmd)
		req.NoError(err)
		req.Equal(want, rc, "%s: %s", cmd, rsp)
	}

	send("SIZE f", StatusFileStatus)
	send("TYPE I", StatusOK)
	for _, cmd := range []string{"SIZE f/", "SIZE /f/.", "MDTM f/", "MDTM 20040109113320 f/", "MFMT 20040109113320 /f/",
		"SITE CHMOD 600 f/", "RETR f/", "STOR f/", "APPE f/", "STOR ts/", "DELE f/", "DELE /lnd/", "RMD lnd/",
		"RNFR f/", "RNTO g", "MLST f/"} {
		want := StatusActionNotTaken
		switch {
		case cmd == "RNTO g":
			want = StatusBadCommandSequence // the RNFR before it was refused
		case strings.HasPrefix(cmd, "STOR "), strings.HasPrefix(cmd, "APPE "):
			want = StatusActionNotTakenNoFile // patch 29
		}
		send(cmd, want)
	}

	send("RNFR f", StatusFileActionPending)
	send("RNTO g/", StatusActionNotTaken)
	send("RNFR lnd/", StatusFileActionPending) // stat follows the link
	send("RNTO q", StatusActionNotTaken)       // rename(2) does not
	send("RNFR d2/", StatusFileActionPending)
	send("RNTO d3/", StatusFileOK)

	for _, cmd := range []string{"LIST f/", "NLST /f/", "STAT f/"} {
		send(cmd, StatusFileActionNotTaken)
	}

	req.Equal("/lnd/inner\r\n", forkList(t, raw, "NLST /lnd/"))
	req.Regexp(`^-rw-r--r-- .* inner\r\n$`, forkList(t, raw, "LIST sub/"))

	b, err := os.ReadFile(dir + "/f")
	req.NoError(err)
	req.Equal("0123456789", string(b))
	fi, err := os.Stat(dir + "/f")
	req.NoError(err)
	req.Equal(os.FileMode(0o644), fi.Mode().Perm())
	req.False(fi.ModTime().Before(time.Now().Add(-time.Hour)), "mtime set through f/: %v", fi.ModTime())
	fi, err = os.Lstat(dir + "/lnd")
	req.NoError(err)
	req.Equal(os.ModeSymlink, fi.Mode().Type(), "the link is left")
	req.DirExists(dir + "/sub")
	req.DirExists(dir + "/d3")

	for _, gone := range []string{"ts", "g", "q", "d2"} {
		_, err = os.Lstat(dir + "/" + gone)
		req.ErrorIs(err, os.ErrNotExist, gone)
	}
}

// TestForkListGlob: a pattern in a listing's last component lists the
// matches in its directory, as vsftpd does (patch 22), with a driver
// that reads whole directories and with one that reads them page by
// page; a pattern never reaches outside its directory.
func TestForkListGlob(t *testing.T) {
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			req := require.New(t)
			driver := &TestServerDriver{}
			var paging *pagingDriver
			if paged {
				driver.AuthProvider = func(user, pass string) (ClientDriver, error) {
					paging = &pagingDriver{TestClientDriver: NewTestClientDriver(driver)}

					return paging, nil
				}
			}
			server := NewTestServerWithTestDriver(t, driver)
			dir := driver.serverDir
			req.NoError(os.MkdirAll(dir+"/g/d*", 0o755))
			for _, n := range []string{"one.txt", "two.txt", "three.dat", ".hid.txt", "x*y", "xzy", "br[x].txt", "d*/in"} {
				req.NoError(os.WriteFile(dir+"/g/"+n, []byte(n), 0o644))
			}
			// Matches past the first page.
			req.NoError(os.Mkdir(dir+"/big", 0o755))
			for i := range 1200 {
				req.NoError(os.WriteFile(fmt.Sprintf("%s/big/f%04d", dir, i), nil, 0o644))
			}

			raw := forkDial(t, server.Addr(), true)
			list := func(cmd string) string {
				t.Helper()

				return sortedLines(forkListRaw(t, raw, cmd))
			}

			req.Equal("/g/br[x].txt\r\n/g/one.txt\r\n/g/two.txt\r\n", list("NLST /g/*.txt"))
			req.Equal("/g/.hid.txt\r\n/g/br[x].txt\r\n/g/one.txt\r\n/g/two.txt\r\n", list("NLST -a /g/*.txt"))
			req.Equal("/g/.hid.txt\r\n", list("NLST /g/.*"))
			req.Equal("g/three.dat\r\ng/two.txt\r\n", list("NLST g/t*"))
			req.Equal("/g/one.txt\r\n/g/two.txt\r\n", list("NLST /g/???.txt"))
			req.Equal("/g/one.txt\r\n/g/two.txt\r\n", list("NLST /g/{one,two}.t?t"))
			req.Equal("/g/x*y\r\n/g/xzy\r\n", list("NLST /g/x*y"))
			req.Equal("/g/d*/in\r\n", list("NLST /g/d*"), "a directory so named is listed outright")
			req.Equal("/g/../g/one.txt\r\n", list("NLST /g/../g/o*"))
			req.Equal("/../../g/one.txt\r\n", list("NLST /../../g/o*"), "the root's parent is the root")
			req.Empty(list("NLST /g/*.zip"))

			got := list("LIST /g/t*")
			req.Regexp(`(?m)^-rw-r--r-- .* three\.dat\r$`, got)
			req.Regexp(`(?m)^-rw-r--r-- .* two\.txt\r$`, got)
			req.Equal(2, strings.Count(got, "\n"), got)
			req.Regexp(`^-rw-r--r-- .* three\.dat\r\n$`, list("LIST -l /g/*.dat"))
			req.Regexp(`^-rw-r--r-- .* three\.dat\r\n$`, list("NLST -l /g/*.dat"))
			pages := func() int {
				if paging == nil {
					return 0
				}

				paging.mu.Lock()
				defer paging.mu.Unlock()

				return paging.pages
			}
			before := pages()
			req.Len(strings.Split(strings.TrimSpace(list("NLST /big/f1*")), "\r\n"), 200)
			if paged {
				req.GreaterOrEqual(pages()-before, 3, "1,200 entries read 512 at a time")
			}

			raw.expect("CWD /g", StatusFileOK)
			req.Equal("br[x].txt\r\none.txt\r\ntwo.txt\r\n", list("NLST *.txt"))
			req.Equal(7, strings.Count(list("LIST *"), "\n"), "every entry but the dotfile")
			raw.expect("CWD /", StatusFileOK)

			// STAT lists as ls -a, answered 213 as vsftpd's.
			rc, rsp := raw.cmd("STAT /g/*.txt")
			req.Equal(StatusFileStatus, rc, rsp)
			req.Regexp(`(?m)^ -rw-r--r-- .* \.hid\.txt$`, rsp)
			req.Regexp(`(?m)^ -rw-r--r-- .* one\.txt$`, rsp)
			req.NotContains(rsp, "three.dat")
			rc, rsp = raw.cmd("STAT /g/*.zip")
			req.Equal(StatusFileStatus, rc, rsp)

			// A missing directory, a file's "directory", a pattern with a
			// trailing slash or before the last component: an error, as
			// LIST of a missing path.
			for _, cmd := range []string{"NLST /nodir/*.txt", "LIST /g/one.txt/*", "LIST /g/*.txt/", "LIST /*/one.txt", "STAT /nodir/*"} {
				rc, rsp = raw.cmd(cmd)
				req.Equal(StatusFileActionNotTaken, rc, "%s: %s", cmd, rsp)
			}

			// MLSD takes a directory, not a pattern.
			rc, rsp = raw.cmd("MLSD /g/*.txt")
			req.Equal(StatusActionNotTaken, rc, rsp)

		})
	}
}

// TestForkGlobMatch: the matcher's rules, and its bound.
func TestForkGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.txt", "a.txt", true},
		{"*.txt", "a.txt.txt", true},
		{"*.txt", "a.txt.bak", false},
		{"a*b*c", "aXbYbZc", true},
		{"?", "é", true},
		{"??", "é", false},
		{"{a,b}*", "bee", true},
		{"{a,b}*", "cee", false},
		{"x{a,}y", "xy", true},
		{"{a,b}{c,d}", "bd", true},
		{"{a", "{a", true},
		{"[ab]", "a", false},
		{"[ab]", "[ab]", true},
		{"*", "", true},
		{"", "a", false},
	} {
		steps := globSteps
		require.Equal(t, c.want, globMatch(c.pattern, c.name, &steps), "%q %q", c.pattern, c.name)
	}

	// 2^40 expansions and a star-heavy pattern stop at the bound.
	start := time.Now()
	steps := globSteps
	require.False(t, globMatch(strings.Repeat("{a,b}", 40)+"c", strings.Repeat("a", 40), &steps))
	steps = globSteps
	require.False(t, globMatch(strings.Repeat("*a", 100)+"b", strings.Repeat("a", 255), &steps))
	require.Less(t, time.Since(start), time.Second)
}

// forkListRaw runs a listing command over EPSV and returns its data.
func forkListRaw(t *testing.T, raw *forkRaw, cmd string) string {
	t.Helper()

	dc, err := net.DialTimeout("tcp", "127.0.0.1:"+raw.epsvPort(), 5*time.Second)
	require.NoError(t, err)

	defer func() { _ = dc.Close() }()

	raw.expect(cmd, StatusFileStatusOK)
	require.NoError(t, dc.SetDeadline(time.Now().Add(10*time.Second)))
	b, err := io.ReadAll(dc)
	require.NoError(t, err)
	code, msg, err := raw.tp.ReadResponse(0)
	require.NoError(t, err)
	require.Equal(t, StatusClosingDataConn, code, "%s: %s", cmd, msg)

	return string(b)
}

// TestForkPROTNeedsTLS: PBSZ and PROT P on a control connection without
// TLS are refused (503), as vsftpd refuses them, instead of answering 200
// and leaving the client to believe its data channel private; PROT C is
// always fine, S and E are 536, anything else 504; after AUTH TLS, PBSZ
// and PROT P are 200.
func TestForkPROTNeedsTLS(t *testing.T) {
	req := require.New(t)
	server := NewTestServerWithTestDriver(t, &TestServerDriver{TLS: true})
	raw := forkDial(t, server.Addr(), true)
	for _, c := range []struct {
		line string
		code int
	}{
		{"PBSZ 0", StatusBadCommandSequence},
		{"PROT P", StatusBadCommandSequence},
		{"PROT C", StatusOK},
		{"PROT c", StatusOK},
		{"PROT S", 536},
		{"PROT E", 536},
		{"PROT X", StatusNotImplementedParam},
	} {
		code, msg := raw.cmd(c.line)
		req.Equal(c.code, code, "%s: %s", c.line, msg)
	}

	tlsRaw := forkDial(t, server.Addr(), false)
	tlsRaw.expect("AUTH TLS", StatusAuthAccepted)
	tc := tls.Client(tlsRaw.nc, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's own certificate
	req.NoError(tc.SetDeadline(time.Now().Add(10 * time.Second)))
	req.NoError(tc.Handshake())
	tp := textproto.NewConn(tc)
	for _, c := range []struct {
		line string
		code int
	}{{"USER " + authUser, StatusUserOK}, {"PASS " + authPass, StatusUserLoggedIn}, {"PBSZ 0", StatusOK}, {"PROT P", StatusOK}} {
		req.NoError(tp.PrintfLine("%s", c.line))
		_, _, err := tp.ReadResponse(c.code)
		req.NoError(err, c.line)
	}
}

// TestForkXCUP: RFC 775's XCUP is CDUP, as vsftpd (upstream: 502), like
// the XCWD, XPWD, XMKD and XRMD it already had.
func TestForkXCUP(t *testing.T) {
	server := NewTestServer(t, false)
	raw := forkDial(t, server.Addr(), true)
	raw.expect("XMKD xd", StatusPathCreated)
	raw.expect("XCWD xd", StatusFileOK)
	require.Contains(t, raw.expect("XPWD", StatusPathCreated), `"/xd"`)
	raw.expect("XCUP", StatusFileOK)
	require.Contains(t, raw.expect("XPWD", StatusPathCreated), `"/"`)
	raw.expect("XRMD xd", StatusFileOK)
}

// TestForkMODELowerCase: MODE's argument is read in any case, as vsftpd,
// TYPE and STRU read theirs.
func TestForkMODELowerCase(t *testing.T) {
	raw := forkDial(t, NewTestServer(t, false).Addr(), true)
	raw.expect("MODE s", StatusOK)
	raw.expect("MODE S", StatusOK)
	raw.expect("STRU f", StatusOK)
	raw.expect("TYPE i", StatusOK)
	raw.expect("MODE x", StatusNotImplementedParam)
}

// TestForkPASSBeforeUSER: PASS without a USER is a bad sequence (503), and
// the session goes on to log in, as vsftpd.
func TestForkPASSBeforeUSER(t *testing.T) {
	raw := forkDial(t, NewTestServer(t, false).Addr(), false)
	raw.expect("PASS "+authPass, StatusBadCommandSequence)
	raw.expect("USER "+authUser, StatusUserOK)
	raw.expect("PASS "+authPass, StatusUserLoggedIn)
}

// TestForkALLOSyntax: RFC 959's "ALLO n R m" reaches the driver with n;
// what is not that syntax is ignored (202) without reaching it. The test
// driver refuses 1 MiB or more (550), which tells the two apart.
func TestForkALLOSyntax(t *testing.T) {
	raw := forkDial(t, NewTestServer(t, false).Addr(), true)
	raw.expect("ALLO 10 R 5", StatusOK)
	raw.expect("ALLO 10 r 5", StatusOK)
	raw.expect("ALLO 2000000 R 5", StatusActionNotTaken)
	raw.expect("ALLO 2000000", StatusActionNotTaken)

	for _, line := range []string{
		"ALLO", "ALLO abc", "ALLO -1", "ALLO +5", "ALLO 2000000x",
		"ALLO 99999999999999999999", "ALLO 10 R", "ALLO 10 X 5", "ALLO 10 R -5",
	} {
		raw.expect(line, StatusNotImplemented)
	}
}

func TestForkParseALLO(t *testing.T) {
	for param, want := range map[string]int{"0": 0, "10": 10, "  10  ": 10, "10 R 5": 10, "007": 7} {
		size, ok := parseALLO(param)
		require.True(t, ok, param)
		require.Equal(t, want, size, param)
	}
}

// TestForkRESTAsVsftpd: REST takes any argument, as vsftpd's
// str_a_to_filesize_t reads it: what is not all digits (or overflows) is
// 0, so the next RETR sends the whole file and the next STOR replaces it,
// as vsftpd's truncating STOR does; upstream answered 550, or kept a
// negative offset that failed the next RETR.
func TestForkRESTAsVsftpd(t *testing.T) {
	req := require.New(t)
	server := NewTestServer(t, false)
	dir := server.driver.(*TestServerDriver).serverDir
	req.NoError(os.WriteFile(dir+"/f", []byte("0123456789"), 0o600))
	raw := forkDial(t, server.Addr(), true)

	for _, line := range []string{"REST abc", "REST", "REST -5", "REST 99999999999999999999", "REST +3"} {
		req.Equal("Restart position accepted (0).", raw.expect(line, StatusFileActionPending), line)
		req.Equal("0123456789", forkListRaw(t, raw, "RETR f"), line)
	}

	raw.expect("REST 3", StatusFileActionPending)
	req.Equal("3456789", forkListRaw(t, raw, "RETR f"))

	raw.expect("REST abc", StatusFileActionPending)
	dc, err := net.DialTimeout("tcp", "127.0.0.1:"+raw.epsvPort(), 5*time.Second)
	req.NoError(err)
	raw.expect("STOR f", StatusFileStatusOK)
	_, err = dc.Write([]byte("xy"))
	req.NoError(err)
	req.NoError(dc.Close())
	_, _, err = raw.tp.ReadResponse(StatusClosingDataConn)
	req.NoError(err)
	b, err := os.ReadFile(dir + "/f")
	req.NoError(err)
	req.Equal("xy", string(b))
}

// TestForkUploadOpenFails553: an upload whose file cannot be opened (its
// directory is missing, its name is a directory) is 553, as vsftpd's
// "Could not create file."; a download's is 550, as before. The replies
// come before any data connection is used.
func TestForkUploadOpenFails553(t *testing.T) {
	server := NewTestServer(t, false)
	req := require.New(t)
	req.NoError(os.Mkdir(server.driver.(*TestServerDriver).serverDir+"/d", 0o755))
	raw := forkDial(t, server.Addr(), true)
	raw.expect("STOR nodir/f", StatusActionNotTakenNoFile)
	raw.expect("APPE nodir/f", StatusActionNotTakenNoFile)
	raw.expect("STOR d", StatusActionNotTakenNoFile)
	raw.expect("RETR nodir/f", StatusActionNotTaken)
	raw.expect("RETR missing", StatusActionNotTaken)
}

// searchDriver refuses to enter the directories named "closed", as a
// filesystem whose user may not search them would.
type searchDriver struct {
	*TestClientDriver
}

func (d *searchDriver) StatSearch(name string) (os.FileInfo, error) {
	fi, err := d.Stat(name)
	if err == nil && fi.IsDir() && path.Base(name) == "closed" {
		return nil, &os.PathError{Op: "chdir", Path: name, Err: os.ErrPermission}
	}

	return fi, err
}

// TestForkCwdSearch: CWD, XCWD and CDUP ask the driver's StatSearch, and
// a directory it refuses is 550 with the working directory unchanged.
func TestForkCwdSearch(t *testing.T) {
	driver := &TestServerDriver{Debug: false}
	driver.AuthProvider = func(_, _ string) (ClientDriver, error) {
		return &searchDriver{TestClientDriver: NewTestClientDriver(driver)}, nil
	}
	server := NewTestServerWithTestDriver(t, driver)
	req := require.New(t)
	req.NoError(os.MkdirAll(driver.serverDir+"/closed/open", 0o755))
	req.NoError(os.Mkdir(driver.serverDir+"/open", 0o755))
	raw := forkDial(t, server.Addr(), true)
	raw.expect("CWD /open", StatusFileOK)
	raw.expect("CWD /closed", StatusActionNotTaken)
	raw.expect("XCWD /closed", StatusActionNotTaken)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/open"`)
	raw.expect("CWD /closed/open", StatusFileOK) // the driver's say: only the last is asked
	raw.expect("CDUP", StatusActionNotTaken)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/closed/open"`)
}

// TestForkRntoEndsRename: an RNTO ends the rename whether it succeeds or
// fails, as vsftpd's does: a failed RNTO used to leave RNFR armed, and a
// later RNTO moved the old source over the file it named.
func TestForkRntoEndsRename(t *testing.T) {
	server := NewTestServer(t, false)
	req := require.New(t)
	dir := server.driver.(*TestServerDriver).serverDir
	req.NoError(os.WriteFile(dir+"/a", []byte("a"), 0o644))
	req.NoError(os.WriteFile(dir+"/e", []byte("echo data"), 0o644))
	raw := forkDial(t, server.Addr(), true)
	raw.expect("RNFR a", StatusFileActionPending)
	raw.expect("RNTO missing/x", StatusActionNotTaken)
	raw.expect("RNTO e", StatusBadCommandSequence)
	b, err := os.ReadFile(dir + "/e")
	req.NoError(err)
	req.Equal("echo data", string(b))
	_, err = os.Stat(dir + "/a")
	req.NoError(err)
	raw.expect("RNFR a", StatusFileActionPending)
	raw.expect("RNTO b", StatusFileOK)
	raw.expect("RNTO e", StatusBadCommandSequence)
}

// TestForkCwdFollowsRename: a rename of the working directory, or of a
// directory above it, takes the working directory with it, as vsftpd's
// (patch 33); a rename of anything else leaves it.
func TestForkCwdFollowsRename(t *testing.T) {
	server := NewTestServer(t, false)
	req := require.New(t)
	dir := server.driver.(*TestServerDriver).serverDir
	req.NoError(os.MkdirAll(dir+"/p/q", 0o755))
	req.NoError(os.Mkdir(dir+"/pq", 0o755))
	raw := forkDial(t, server.Addr(), true)
	raw.expect("CWD /p/q", StatusFileOK)
	raw.expect("RNFR /pq", StatusFileActionPending)
	raw.expect("RNTO /pr", StatusFileOK) // a name that shares the prefix "/p"
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/p/q"`)
	raw.expect("RNFR /p", StatusFileActionPending)
	raw.expect("RNTO /r", StatusFileOK)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/r/q"`)
	raw.expect("MKD sub", StatusPathCreated)
	_, err := os.Stat(dir + "/r/q/sub")
	req.NoError(err)
	raw.expect("RNFR /r/q", StatusFileActionPending)
	raw.expect("RNTO /pr/q2", StatusFileOK)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/pr/q2"`)
	raw.expect("RNFR sub", StatusFileActionPending)
	raw.expect("RNTO sub2", StatusFileOK)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/pr/q2"`)
	_, err = os.Stat(dir + "/pr/q2/sub2")
	req.NoError(err)
	// A working directory below a name that merely starts with the
	// renamed one's stays.
	raw.expect("CWD /pr/q2/sub2", StatusFileOK)
	req.NoError(os.Mkdir(dir+"/p", 0o755))
	raw.expect("RNFR /p", StatusFileActionPending)
	raw.expect("RNTO /p9", StatusFileOK)
	req.Contains(raw.expect("PWD", StatusPathCreated), `"/pr/q2/sub2"`)
}
