package ftpserver

// Tests of the upgate fork's additions: MLSx facts and OPTS MLST
// (mlsx_facts.go) and MainDriverExtensionReplyCode.

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secsy/goftp"
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
		req.Equal(StatusSyntaxErrorParameters, rc, "%s after EPSV ALL: %s", cmd, rsp)
	}

	rc, rsp, err = raw.SendCommand("EPSV")
	req.NoError(err)
	req.Equal(StatusEnteringEPSV, rc, rsp)
}
