package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// scpExec runs command on a new session channel with input as its stdin
// and returns what it wrote to stdout and its exit status: the SCP
// protocol as a client's bytes, with nothing of a client's own checks.
func scpExec(t *testing.T, c *ssh.Client, command string, input []byte) (string, int) {
	t.Helper()
	out, _, code := runWith(t, c, command, input)
	return out, code
}

// TestSCPClient copies with OpenSSH's scp client in its legacy SCP mode
// (scp -O, the default before OpenSSH 9.0): a file and a tree up with
// their modes and times (-p), and back down, byte for byte.
func TestSCPClient(t *testing.T) {
	scp := gwtest.RequireTool(t, "scp")
	sshpass := gwtest.RequireTool(t, "sshpass")
	e := start(t, nil)
	local := t.TempDir()
	data := randomBytes(1<<20 + 17)
	mtime := time.Date(2003, 4, 5, 6, 7, 8, 0, time.UTC)
	mustWrite(t, filepath.Join(local, "src", "big.bin"), data)
	mustWrite(t, filepath.Join(local, "src", "sub", "small.txt"), []byte("small\n"))
	for p, mode := range map[string]os.FileMode{"src/big.bin": 0o640, "src/sub/small.txt": 0o600, "src/sub": 0o750} {
		if err := os.Chmod(filepath.Join(local, p), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(local, p), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) {
		t.Helper()
		base := []string{"-p", gwtest.Users["alice"], scp, "-O", "-q", "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=no",
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-P", port(t, e)}
		command(t, time.Minute, nil, sshpass, append(base, args...)...)
	}
	run("-rp", filepath.Join(local, "src"), "alice@127.0.0.1:up")
	home := e.UserDir("alice")
	check := func(dir string) {
		t.Helper()
		for p, want := range map[string]struct {
			mode os.FileMode
			data []byte
		}{"big.bin": {0o640, data}, "sub/small.txt": {0o600, []byte("small\n")}, "sub": {0o750 | os.ModeDir, nil}} {
			fi, err := os.Stat(filepath.Join(dir, p))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want.mode || !fi.ModTime().Equal(mtime) {
				t.Errorf("%s/%s: mode %v mtime %v, want %v and %v", dir, p, fi.Mode(), fi.ModTime(), want.mode, mtime)
			}
			if want.data != nil && sum256(mustRead(t, filepath.Join(dir, p))) != sum256(want.data) {
				t.Errorf("%s/%s: content differs", dir, p)
			}
		}
	}
	check(filepath.Join(home, "up"))
	back := filepath.Join(local, "back")
	run("-rp", "alice@127.0.0.1:up", back)
	check(back)
	if left := agenttest.TempFilesUnder(t, home); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}

// TestSCPWithCurl copies with curl's scp:// (libssh2's SCP client, as
// PHP's ssh2_scp_send and other libssh2 programs): its upload ends its
// stream after the data, with no closing 0 byte, and must land whole.
func TestSCPWithCurl(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := start(t, nil)
	local := t.TempDir()
	home := e.UserDir("alice")
	data := randomBytes(1<<20 + 5)
	mustWrite(t, filepath.Join(local, "big.bin"), data)
	mustWrite(t, filepath.Join(home, "kept.txt"), []byte("old content, longer than the new\n"))
	if err := os.Chmod(filepath.Join(home, "kept.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(local, "new.txt"), []byte("new\n"))
	url := "scp://127.0.0.1:" + port(t, e)
	run := func(args ...string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "-k", "-u", "alice:" + gwtest.Users["alice"]}, args...)...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("curl %q: %v\n%s", args, err, out)
		}
		return cmd.ProcessState.ExitCode()
	}
	if code := run("-T", filepath.Join(local, "big.bin"), url+"/big.bin"); code != 0 {
		t.Fatalf("curl upload: exit %d", code)
	}
	if code := run("-T", filepath.Join(local, "new.txt"), url+"/kept.txt"); code != 0 {
		t.Fatalf("curl upload over kept.txt: exit %d", code)
	}
	for p, want := range map[string]struct {
		mode os.FileMode
		data []byte
	}{"big.bin": {0o644, data}, "kept.txt": {0o600, []byte("new\n")}} {
		fi, err := os.Stat(filepath.Join(home, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want.mode || sum256(mustRead(t, filepath.Join(home, p))) != sum256(want.data) {
			t.Errorf("%s: mode %v, %d bytes; want %v and %d bytes", p, fi.Mode(), fi.Size(), want.mode, len(want.data))
		}
	}
	back := filepath.Join(local, "back.bin")
	if code := run("-o", back, url+"/big.bin"); code != 0 {
		t.Fatalf("curl download: exit %d", code)
	}
	if sum256(mustRead(t, back)) != sum256(data) {
		t.Error("the download differs from the upload")
	}
	if code := run("-T", filepath.Join(local, "new.txt"), url+"/nodir/x.txt"); code == 0 {
		t.Error("an upload into a missing directory succeeded")
	}
	if _, err := os.Lstat(filepath.Join(home, "nodir")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("nodir: %v, want it missing", err)
	}
	if left := agenttest.TempFilesUnder(t, home); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}

// TestSCPClientGoneAfterData: PHP's ssh2_scp_send (libssh2) sends a
// file's data, then EOF and CLOSE, and the script ends, closing the
// connection at once, without scp's closing 0 byte and without waiting
// for anything. The file arrived whole and must be written, as sshd's
// scp has written it by then; before, the connection's end cancelled its
// commit most of the time. Each ending is tried several times, once the
// gateway has read the data.
func TestSCPClientGoneAfterData(t *testing.T) {
	e := start(t, nil)
	home := e.UserDir("alice")
	data := randomBytes(300_000)
	endings := map[string]func(c *ssh.Client, s *ssh.Session, in io.WriteCloser){
		"EOF, then the connection closed": func(c *ssh.Client, s *ssh.Session, in io.WriteCloser) { _ = in.Close(); _ = c.Close() },
		"the connection closed":           func(c *ssh.Client, s *ssh.Session, in io.WriteCloser) { _ = c.Close() },
		"the channel closed, then the connection": func(c *ssh.Client, s *ssh.Session, in io.WriteCloser) {
			_ = s.Close()
			_ = c.Close()
		},
	}
	for what, end := range endings {
		for i := range 8 {
			name := fmt.Sprintf("gone-%d-%d.bin", len(what), i)
			c, err := ssh.Dial("tcp", e.Addr, clientConfig("alice", ssh.Password(gwtest.Users["alice"])))
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			in, _ := s.StdinPipe()
			out, _ := s.StdoutPipe()
			if err := s.Start("scp -t ."); err != nil {
				t.Fatal(err)
			}
			ack := func() {
				t.Helper()
				b := make([]byte, 1)
				if _, err := io.ReadFull(out, b); err != nil || b[0] != 0 {
					t.Fatalf("%s: answer %q, %v", what, b, err)
				}
			}
			ack()
			fmt.Fprintf(in, "C0644 %d %s\n", len(data), name)
			ack()
			bytesIn := func() int64 {
				var n int64
				for _, sess := range e.Srv.Gateway.Registry().Sessions() {
					n += sess.Info().BytesIn
				}
				return n
			}
			before := bytesIn()
			if _, err := in.Write(data); err != nil {
				t.Fatal(err)
			}
			// The gateway has read it all once that many bytes came in,
			// each SSH packet (at most 32 KiB of data) with at least 34
			// of its own: a client that closes earlier may lose what is
			// still in flight (a reset), on sshd as well.
			least := int64(len(data) + 34*((len(data)+32767)/32768))
			if !eventually(10*time.Second, func() bool { return bytesIn()-before >= least }) {
				t.Fatalf("%s, run %d: the gateway read %d bytes of the data, want at least %d", what, i, bytesIn()-before, least)
			}
			end(c, s, in)
			// The commit comes after the client is gone (the session
			// has left the registry by then): wait for the file, bounded.
			var b []byte
			if !eventually(10*time.Second, func() bool {
				b, err = os.ReadFile(filepath.Join(home, name))
				return err == nil
			}) || !bytes.Equal(b, data) {
				t.Errorf("%s, run %d: %d bytes written (%v), want all %d", what, i, len(b), err, len(data))
			}
		}
	}
	e.AgentIdle(t)
	if left := agenttest.TempFilesUnder(t, home); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}

// TestSCPRecords sends the sink records a client could send, well formed
// or not, and checks each answer byte for byte, the exit status, and
// what landed on disk: a record it cannot follow ends the copy with a
// protocol error (scp.c's words), and nothing half-written is ever seen.
func TestSCPRecords(t *testing.T) {
	e := start(t, nil)
	c := sshClient(t, e, "alice")
	home := e.UserDir("alice")
	mustWrite(t, filepath.Join(home, "old.txt"), []byte("old content\n"))
	for _, tc := range []struct {
		name, command, input string
		out                  string
		code                 int
		files                map[string]string // path -> content after; "" = missing
	}{
		{name: "a file", command: "scp -t /", input: "C0644 5 a.txt\nhello\x00",
			out: "\x00\x00\x00", files: map[string]string{"a.txt": "hello"}},
		{name: "bad mode", command: "scp -t /", input: "C06x4 5 b.txt\nhello\x00",
			out: "\x00\x01scp: protocol error: bad mode\n", code: 1, files: map[string]string{"b.txt": ""}},
		{name: "no size", command: "scp -t /", input: "C0644 x b.txt\n",
			out: "\x00\x01scp: protocol error: size not present\n", code: 1},
		{name: "size out of range", command: "scp -t /", input: "C0644 99999999999999999999 b.txt\n",
			out: "\x00\x01scp: protocol error: size out of range\n", code: 1},
		{name: "a name with a slash", command: "scp -t /", input: "C0644 5 ../b.txt\nhello\x00",
			out: "\x00\x01scp: error: unexpected filename: ../b.txt\n", code: 1},
		{name: "a name of dots", command: "scp -t /", input: "C0644 5 ..\nhello\x00",
			out: "\x00\x01scp: error: unexpected filename: ..\n", code: 1},
		{name: "a directory without -r", command: "scp -t /", input: "D0755 0 d\n",
			out: "\x00\x01scp: protocol error: received directory without -r\n", code: 1, files: map[string]string{"d": ""}},
		{name: "a line too long", command: "scp -t /", input: "C0644 5 " + strings.Repeat("x", 3000) + "\n",
			out: "\x00\x01scp: protocol error: line too long\n", code: 1},
		{name: "not scp", command: "scp -t /", input: "Welcome to my shell\n",
			out: "\x00\x01scp: Welcome to my shell\n", code: 1},
		{name: "garbage after a record", command: "scp -t /", input: "C0644 1 c.txt\nc\x00Xyz\n",
			out: "\x00\x00\x00\x01scp: protocol error: expected control record\n", code: 1, files: map[string]string{"c.txt": "c"}},
		{name: "the data cut short", command: "scp -t /", input: "C0644 100 cut.txt\nonly this",
			out: "\x00\x00", code: 1, files: map[string]string{"cut.txt": ""}},
		{name: "the sender failed to read its file", command: "scp -t /", input: "C0644 5 old.txt\n\x00\x00\x00\x00\x00\x01scp: old.txt: Input/output error\n",
			out: "\x00\x00\x01scp: /old.txt: not written: the sender reported an error\n", code: 1, files: map[string]string{"old.txt": "old content\n"}},
		{name: "a fatal error from the client", command: "scp -t /", input: "\x02scp: gone\nC0644 1 f.txt\nf\x00",
			out: "\x00", code: 1, files: map[string]string{"f.txt": ""}},
		{name: "times", command: "scp -p -t /", input: "T1000000000 0 1000000001 0\nC0640 2 t.txt\nhi\x00",
			out: "\x00\x00\x00\x00", files: map[string]string{"t.txt": "hi"}},
		{name: "times a time_t cannot hold are ignored", command: "scp -p -t /", input: "T99999999999999999999 0 1 0\nC0640 2 t2.txt\nhi\x00",
			out: "\x00\x00\x00\x00", files: map[string]string{"t2.txt": "hi"}},
		{name: "bad times", command: "scp -p -t /", input: "T12 x 1 0\n",
			out: "\x00\x01scp: protocol error: mtime.usec not delimited\n", code: 1},
		{name: "a tree", command: "scp -r -t /", input: "D0750 0 tree\nC0644 1 f\nf\x00D0755 0 sub\nC0600 0 empty\n\x00E\nE\n",
			out: "\x00\x00\x00\x00\x00\x00\x00\x00\x00", files: map[string]string{"tree/f": "f", "tree/sub/empty": ""}},
		{name: "E at the top ends the copy", command: "scp -t /", input: "E\nC0644 1 late.txt\nl\x00",
			out: "\x00\x00", files: map[string]string{"late.txt": ""}},
		{name: "two targets", command: "scp -t a b", out: "\x01scp: ambiguous target\n", code: 1},
		{name: "-d and a file", command: "scp -d -t old.txt", out: "\x01scp: old.txt: Not a directory\n", code: 1},
		{name: "an unknown option", command: "scp -x -t /", code: 1},
		{name: "neither -t nor -f", command: "scp a b", code: 1},
		{name: "a target outside the tree is inside it", command: "scp -t ../../../..", input: "C0644 3 esc.txt\nesc\x00",
			out: "\x00\x00\x00", files: map[string]string{"esc.txt": "esc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := scpExec(t, c, tc.command, []byte(tc.input))
			if out != tc.out || code != tc.code {
				t.Errorf("%s with %q:\nanswer %q, exit %d\nwant   %q, exit %d", tc.command, tc.input, out, code, tc.out, tc.code)
			}
			for p, want := range tc.files {
				got, err := os.ReadFile(filepath.Join(home, p))
				switch {
				case want == "" && !errors.Is(err, os.ErrNotExist) && !(err == nil && len(got) == 0 && strings.HasSuffix(p, "empty")):
					t.Errorf("%s: %q, %v; want it missing", p, got, err)
				case want != "" && string(got) != want:
					t.Errorf("%s: %q, %v; want %q", p, got, err, want)
				}
			}
		})
	}
	fi, err := os.Stat(filepath.Join(home, "t.txt"))
	if err != nil || fi.Mode() != 0o640 || fi.ModTime().Unix() != 1000000000 {
		t.Errorf("t.txt after scp -p: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(home, "tree")); err != nil || fi.Mode() != os.ModeDir|0o750 {
		t.Errorf("tree after its E: %v, %v; want 0750", fi, err)
	}
	if left := agenttest.TempFilesUnder(t, e.Root); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}

// TestSCPSource sends files to a client that answers as it likes: one
// that refuses a file (a 1 byte) gets the next; the T and C records and
// the data are exactly scp.c's.
func TestSCPSource(t *testing.T) {
	e := start(t, nil)
	c := sshClient(t, e, "alice")
	home := e.UserDir("alice")
	mustWrite(t, filepath.Join(home, "d", "one"), []byte("1"))
	mustWrite(t, filepath.Join(home, "d", "two"), []byte("22"))
	mtime := time.Unix(1234567890, 0)
	for _, p := range []string{"d/one", "d/two", "d"} {
		if err := os.Chtimes(filepath.Join(home, p), time.Unix(1234567000, 0), mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(home, "d", "one"), os.ModeSetuid|0o640); err != nil { // setuid: sent as it is
		t.Fatal(err)
	}
	out, code := scpExec(t, c, "scp -p -f d/one d/two", []byte("\x00\x00\x00\x00\x00\x00\x00"))
	want := "T1234567890 0 1234567000 0\nC4640 1 one\n1\x00T1234567890 0 1234567000 0\nC0644 2 two\n22\x00"
	if out != want || code != 0 {
		t.Errorf("scp -p -f: %q, exit %d; want %q", out, code, want)
	}
	// Refusing the first file's C record: its data is not sent.
	out, code = scpExec(t, c, "scp -f d/one d/two", []byte("\x00\x01scp: no thanks\n\x00\x00"))
	if want := "C4640 1 one\nC0644 2 two\n22\x00"; out != want || code != 1 {
		t.Errorf("refused: %q, exit %d; want %q and exit 1", out, code, want)
	}
	// (A tree's entries go in the order the directory lists them, as
	// scp.c's readdir(3) gives them: TestSCPAgainstOpenSSH compares that.)
	mustWrite(t, filepath.Join(home, "d2", "only"), []byte("only"))
	out, code = scpExec(t, c, "scp -r -f 'd2'", bytes.Repeat([]byte{0}, 5))
	if want := "D0755 0 d2\nC0644 4 only\nonly\x00E\n"; out != want || code != 0 {
		t.Errorf("scp -r -f: %q, exit %d; want %q", out, code, want)
	}
	out, code = scpExec(t, c, "scp -f d/*", bytes.Repeat([]byte{0}, 5))
	if want := "C4640 1 one\n1\x00C0644 2 two\n22\x00"; out != want || code != 0 {
		t.Errorf("scp -f d/*: %q, exit %d; want %q", out, code, want)
	}
	// A client gone before its go-ahead: nothing is sent.
	if out, code = scpExec(t, c, "scp -f d/one", nil); out != "" || code != 1 {
		t.Errorf("no go-ahead: %q, exit %d", out, code)
	}
}

// TestSCPFailuresKeepTheOldFile injects the faults a disk and an agent
// have into the filesystem under an scp upload: a write that fails (a
// full disk) and a commit that fails. Each is reported for its file, the
// old file stays whole, and the copy goes on with the next file.
func TestSCPFailuresKeepTheOldFile(t *testing.T) {
	fsys := memfs.New(memfs.Options{})
	if err := afero.WriteFile(fsys, "/full.txt", []byte("old full"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := afero.WriteFile(fsys, "/commit.txt", []byte("old commit"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "hostkey-ed25519")}
	}, func(string) afero.Fs { return fsys })
	fsys.Inject(memfs.Fault{Op: memfs.OpWrite, Path: "/full.txt", Err: syscall.ENOSPC})
	fsys.Inject(memfs.Fault{Op: memfs.OpClose, Path: "/commit.txt", Err: syscall.EIO})
	c := sshClient(t, &env{Env: e, Addr: e.Srv.SFTPAddr.String()}, "alice")
	big := strings.Repeat("x", 200_000)
	input := "C0644 200000 full.txt\n" + big + "\x00" + "C0644 3 commit.txt\nnew\x00" + "C0644 4 next.txt\nnext\x00"
	out, code := scpExec(t, c, "scp -t /", []byte(input))
	want := "\x00" + "\x00\x01scp: /full.txt: No space left on device\n" + "\x00\x01scp: /commit.txt: Input/output error\n" + "\x00\x00"
	if out != want || code != 1 {
		t.Errorf("answer %q, exit %d; want %q and exit 1", out, code, want)
	}
	for p, content := range map[string]string{"/full.txt": "old full", "/commit.txt": "old commit", "/next.txt": "next"} {
		if got, err := afero.ReadFile(fsys, p); string(got) != content {
			t.Errorf("%s: %q, %v; want %q", p, got, err, content)
		}
	}
}

// TestSCPPanicReleasesTheUpload: a panic under an scp upload (here in the
// filesystem's Write) discards the upload and releases its file. With
// one open file allowed per user, a later upload on a new connection
// still works.
func TestSCPPanicReleasesTheUpload(t *testing.T) {
	fsys := memfs.New(memfs.Options{})
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "hostkey-ed25519")}
		cfg.Connections.MaxFilesPerUser = 1
	}, func(string) afero.Fs { return fsys })
	fsys.Inject(memfs.Fault{Op: memfs.OpWrite, Path: "/boom.txt", Func: func(memfs.Op, string) error { panic("boom") }})
	e2 := &env{Env: e, Addr: e.Srv.SFTPAddr.String()}
	c := sshClient(t, e2, "alice")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin = strings.NewReader("C0644 5 boom.txt\nhello\x00")
	within(t, 15*time.Second, "scp -t / with a panic", func() { err = s.Run("scp -t /") })
	var missing *ssh.ExitMissingError
	if !errors.As(err, &missing) {
		t.Errorf("the panicking upload: %v, want no exit status (the channel closed)", err)
	}
	c.Close()
	out, code := scpExec(t, sshClient(t, e2, "alice"), "scp -t /", []byte("C0644 2 ok.txt\nok\x00"))
	if out != "\x00\x00\x00" || code != 0 {
		t.Errorf("a later upload: %q, exit %d; want %q, exit 0", out, code, "\x00\x00\x00")
	}
	if _, err := fsys.Stat("/boom.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("boom.txt after the panic: %v, want it missing", err)
	}
}

// TestExecPatternsWithinBounds: the words of an exec command are
// expanded as a shell would, within one budget for the whole command, so
// that a short command of many patterns is refused at once, before it
// lists a directory thousands of times or holds millions of names.
func TestExecPatternsWithinBounds(t *testing.T) {
	e := start(t, nil)
	home := e.UserDir("alice")
	for i := range 300 {
		mustWrite(t, filepath.Join(home, "many", fmt.Sprintf("f%03d", i)), nil)
	}
	mustWrite(t, filepath.Join(home, "sum", "a.txt"), []byte("a"))
	mustWrite(t, filepath.Join(home, "sum", "b.txt"), []byte("b"))
	c := sshClient(t, e, "alice")
	out, _, code := run(t, c, "md5sum sum/*.txt")
	if want := "0cc175b9c0f1b6a831c399e269772661  sum/a.txt\n92eb5ffee6ae2fec3ad71c777531578f  sum/b.txt\n"; out != want || code != 0 {
		t.Errorf("md5sum sum/*.txt: %q, exit %d; want %q", out, code, want)
	}
	_, errOut, code := run(t, c, "md5sum "+strings.Repeat("many/* ", 3000))
	if code != 2 || !strings.Contains(errOut, "at most 100 files per command") {
		t.Errorf("md5sum of 3,000 patterns of 300 names: exit %d, %q", code, errOut)
	}
	_, errOut, code = run(t, c, "scp -f "+strings.Repeat("many/* ", 3000))
	if code != 1 || !strings.Contains(errOut, "patterns match too many names") {
		t.Errorf("scp -f of 3,000 patterns of 300 names: exit %d, %q", code, errOut)
	}
}
