package sftp_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	upsftp "github.com/upgate/upgate/frontends/sftp"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// The protocol tests drive the SSH and SFTP layers with x/crypto/ssh and
// pkg/sftp clients over real sockets, and check every effect in the
// embedded agent's directory.

// clientConfig is a client config for user with the given auth methods.
func clientConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
}

// sshClient logs in as user with password and returns the SSH client.
func sshClient(t testing.TB, e *env, user string) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", e.Addr, clientConfig(user, ssh.Password(gwtest.Users[user])))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// within runs fn and fails the test if it takes longer than d: what it
// does must never hang.
func within(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: no answer within %v", what, d)
	}
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNoSessions waits until the gateway holds no session.
func waitNoSessions(t testing.TB, e *env, d time.Duration) {
	t.Helper()
	reg := e.Srv.Gateway.Registry()
	if !eventually(d, func() bool { return reg.Len() == 0 }) {
		var left []string
		for _, s := range reg.Sessions() {
			left = append(left, fmt.Sprintf("%s %s user=%q", s.ID, s.Remote, s.User()))
		}
		t.Fatalf("sessions still open after %v: %v", d, left)
	}
}

func sum256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func mustWrite(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withKeys sets the authorized keys of user, authorized_keys lines.
func withKeys(user string, lines ...string) func(*config.Config) {
	return func(c *config.Config) {
		keys := make([]config.AuthorizedKey, len(lines))
		for i, line := range lines {
			k, err := config.ParseAuthorizedKey(line)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
		for i := range c.Users {
			if c.Users[i].Name == user {
				c.Users[i].AuthorizedKeys = keys
			}
		}
	}
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorizedLine(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// failingSigner offers a public key but cannot sign: a client that holds
// only the public half.
type failingSigner struct{ pub ssh.PublicKey }

func (f failingSigner) PublicKey() ssh.PublicKey { return f.pub }
func (f failingSigner) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	return nil, errors.New("no private key here")
}

// forgingSigner presents one public key and signs with another key: the
// signature cannot verify.
type forgingSigner struct {
	pub   ssh.PublicKey
	other ssh.Signer
}

func (f forgingSigner) PublicKey() ssh.PublicKey { return f.pub }
func (f forgingSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return f.other.Sign(r, data)
}

// closedUsers records the user of every session the registry removes.
type closedUsers struct {
	mu    sync.Mutex
	users []string
}

func watchClosed(e *env) *closedUsers {
	cu := &closedUsers{}
	e.Srv.Gateway.Registry().OnClose(func(s *gateway.Session) {
		cu.mu.Lock()
		defer cu.mu.Unlock()
		cu.users = append(cu.users, s.User())
	})
	return cu
}

func (cu *closedUsers) list() []string {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	return append([]string(nil), cu.users...)
}

func TestPublicKeyLogin(t *testing.T) {
	good, stranger := newSigner(t), newSigner(t)
	e := start(t, withKeys("alice", authorizedLine(good)))
	closed := watchClosed(e)

	t.Run("authorized key", func(t *testing.T) {
		conn, err := ssh.Dial("tcp", e.Addr, clientConfig("alice", ssh.PublicKeys(good)))
		if err != nil {
			t.Fatalf("login with an authorized key: %v", err)
		}
		defer conn.Close()
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f, err := c.Create("/by-key.txt")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("key login")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, filepath.Join(e.UserDir("alice"), "by-key.txt")); string(got) != "key login" {
			t.Fatalf("file on disk: %q", got)
		}
	})

	refused := []struct {
		name string
		user string
		auth ssh.AuthMethod
	}{
		{"key not authorized", "alice", ssh.PublicKeys(stranger)},
		{"alice's key for bob", "bob", ssh.PublicKeys(good)},
		{"offered only, cannot sign", "alice", ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			return []ssh.Signer{failingSigner{good.PublicKey()}}, nil
		})},
		{"forged signature", "alice", ssh.PublicKeys(forgingSigner{pub: good.PublicKey(), other: stranger})},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			within(t, 20*time.Second, "login", func() {
				conn, err := ssh.Dial("tcp", e.Addr, clientConfig(tc.user, tc.auth))
				if err == nil {
					conn.Close()
					t.Errorf("login as %s succeeded", tc.user)
				}
			})
		})
	}
	waitNoSessions(t, e, 10*time.Second)
	// The OnClose hooks run just after a session leaves the registry:
	// under load the count above can reach zero before the hook that
	// records alice ran.
	eventually(5*time.Second, func() bool { return slices.Contains(closed.list(), "alice") })
	logins := 0
	for _, u := range closed.list() {
		switch u {
		case "":
		case "alice":
			logins++
		default:
			t.Errorf("a session logged in as %q", u)
		}
	}
	if logins != 1 {
		t.Errorf("%d sessions logged in as alice, want exactly the one with the authorized key", logins)
	}
}

func TestHostKeysGeneratedAndKept(t *testing.T) {
	dir := t.TempDir()
	paths := []string{
		filepath.Join(dir, "ssh_host_ed25519_key"),
		filepath.Join(dir, "ssh_host_ecdsa_key"),
		filepath.Join(dir, "ssh_host_rsa_key"),
	}
	edit := func(c *config.Config) { c.SFTP.HostKeys = paths }
	algos := []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA256}

	// hostKeys logs in once per algorithm and returns the fingerprint
	// each presented.
	hostKeys := func(e *env) map[string]string {
		out := make(map[string]string)
		for _, algo := range algos {
			var seen ssh.PublicKey
			conf := clientConfig("alice", ssh.Password(gwtest.Users["alice"]))
			conf.HostKeyAlgorithms = []string{algo}
			conf.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
				seen = key
				return nil
			}
			c, err := ssh.Dial("tcp", e.Addr, conf)
			if err != nil {
				t.Fatalf("host key algorithm %s: %v", algo, err)
			}
			c.Close()
			if seen == nil {
				t.Fatalf("host key algorithm %s: no host key seen", algo)
			}
			out[algo] = ssh.FingerprintSHA256(seen)
		}
		return out
	}

	first := hostKeys(start(t, edit))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("host key not created: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if first[ssh.KeyAlgoED25519] == first[ssh.KeyAlgoECDSA256] || first[ssh.KeyAlgoECDSA256] == first[ssh.KeyAlgoRSASHA256] {
		t.Errorf("different algorithms presented the same key: %v", first)
	}
	second := hostKeys(start(t, edit))
	for _, algo := range algos {
		if first[algo] != second[algo] {
			t.Errorf("%s host key changed across restarts: %s then %s", algo, first[algo], second[algo])
		}
	}
	t.Logf("host keys: %v", first)
}

// TestHandshakeDeadline: a client that connects and says nothing is
// disconnected once the handshake timeout passes. The config has no key
// for the timeout, so the frontend is built here over the harness's
// gateway with a short one.
func TestHandshakeDeadline(t *testing.T) {
	e := start(t, nil)
	keys, err := upsftp.LoadHostKeys([]string{filepath.Join(t.TempDir(), "hostkey_ed25519")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := upsftp.New(e.Srv.Gateway, upsftp.Config{HostKeys: keys, HandshakeTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := e.Srv.Gateway.Listen(upsftp.Protocol(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})

	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	begin := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(conn) // version line and KEXINIT, then EOF
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("silent client not disconnected within 20 s (read %d bytes): %v", len(got), err)
	}
	if !bytes.HasPrefix(got, []byte("SSH-2.0-OpenSSH_9.2_upgate")) {
		t.Errorf("server greeting %q", got[:min(len(got), 40)])
	}
	if took < 400*time.Millisecond {
		t.Errorf("disconnected after %v, before the 500 ms handshake timeout", took)
	}
	t.Logf("silent client disconnected after %v (handshake timeout 500ms)", took.Round(time.Millisecond))
	waitNoSessions(t, e, 10*time.Second)
}

func TestMaxAuthTries(t *testing.T) {
	e := start(t, nil)
	tries := 0
	conf := clientConfig("alice", ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
		tries++
		return "wrong", nil
	}), 20))
	within(t, 30*time.Second, "wrong passwords", func() {
		c, err := ssh.Dial("tcp", e.Addr, conf)
		if err == nil {
			c.Close()
			t.Error("logged in with a wrong password")
			return
		}
		t.Logf("after %d wrong passwords: %v", tries, err)
	})
	if tries > 7 {
		t.Errorf("the server let %d password attempts through on one connection", tries)
	}
	if tries < 6 {
		t.Errorf("disconnected after %d attempts, before MaxAuthTries (6)", tries)
	}
	waitNoSessions(t, e, 10*time.Second)
}

// run runs command on a new session channel and returns its output and
// exit status.
func run(t testing.TB, c *ssh.Client, command string) (stdout, stderr string, code int) {
	t.Helper()
	return runWith(t, c, command, nil)
}

// runWith is run with stdin as the command's standard input.
func runWith(t testing.TB, c *ssh.Client, command string, stdin []byte) (stdout, stderr string, code int) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errOut bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = bytes.NewReader(stdin), &out, &errOut
	within(t, 15*time.Second, "exec "+command, func() { err = s.Run(command) })
	var ee *ssh.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitStatus()
	default:
		t.Fatalf("exec %q: %v", command, err)
	}
	return out.String(), errOut.String(), code
}

func TestChannels(t *testing.T) {
	e := start(t, nil)
	c := sshClient(t, e, "alice")
	data := randomBytes(300_000)
	mustWrite(t, filepath.Join(e.UserDir("alice"), "dir", "f"), data)

	t.Run("pwd", func(t *testing.T) {
		out, _, code := run(t, c, "pwd")
		if out != "/\n" || code != 0 {
			t.Errorf("pwd: %q, exit %d", out, code)
		}
	})
	sums := map[string]string{}
	m, s1, s256 := md5.Sum(data), sha1.Sum(data), sha256.Sum256(data)
	sums["md5sum"], sums["sha1sum"], sums["sha256sum"] = hex.EncodeToString(m[:]), hex.EncodeToString(s1[:]), hex.EncodeToString(s256[:])
	for cmd, want := range sums {
		t.Run(cmd, func(t *testing.T) {
			out, errOut, code := run(t, c, cmd+" dir/f")
			if out != want+"  dir/f\n" || code != 0 {
				t.Errorf("%s: %q (stderr %q), exit %d; want %s", cmd, out, errOut, code, want)
			}
			out, _, code = run(t, c, cmd+" '/dir/f'")
			if !strings.HasPrefix(out, want+"  ") || code != 0 {
				t.Errorf("%s with an absolute quoted path: %q, exit %d", cmd, out, code)
			}
		})
	}
	t.Run("sums of standard input", func(t *testing.T) {
		out, _, code := run(t, c, "md5sum")
		if out != "d41d8cd98f00b204e9800998ecf8427e  -\n" || code != 0 {
			t.Errorf("md5sum of empty input: %q, exit %d", out, code)
		}
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Stdin = strings.NewReader("hello")
		var stdout bytes.Buffer
		s.Stdout = &stdout
		within(t, 15*time.Second, "sha1sum -", func() { err = s.Run("sha1sum -") })
		if want := fmt.Sprintf("%x  -\n", sha1.Sum([]byte("hello"))); err != nil || stdout.String() != want {
			t.Errorf("sha1sum - of hello: %q, %v; want %q", stdout.String(), err, want)
		}
	})
	t.Run("md5sum missing", func(t *testing.T) {
		out, errOut, code := run(t, c, "md5sum missing")
		if code != 1 || out != "" || !strings.Contains(errOut, "missing") || !strings.Contains(errOut, "No such file") {
			t.Errorf("md5sum missing: stdout %q, stderr %q, exit %d", out, errOut, code)
		}
	})
	t.Run("ls refused", func(t *testing.T) {
		_, errOut, code := run(t, c, "ls -la")
		if code == 0 || !strings.Contains(errOut, "not allowed") {
			t.Errorf("ls: stderr %q, exit %d", errOut, code)
		}
	})
	t.Run("shell refused", func(t *testing.T) {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var errOut bytes.Buffer
		s.Stderr = &errOut
		within(t, 15*time.Second, "shell", func() {
			if err = s.Shell(); err == nil {
				err = s.Wait()
			}
		})
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 1 {
			t.Errorf("shell: %v, want exit status 1", err)
		}
		if !strings.Contains(errOut.String(), "SFTP") {
			t.Errorf("shell: stderr %q gives no reason", errOut.String())
		}
	})
	t.Run("pty refused", func(t *testing.T) {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		within(t, 15*time.Second, "pty-req", func() { err = s.RequestPty("xterm", 40, 80, ssh.TerminalModes{}) })
		if err == nil {
			t.Error("pty-req accepted")
		}
		// The channel still serves a command afterwards.
		var out bytes.Buffer
		s.Stdout = &out
		within(t, 15*time.Second, "exec after pty-req", func() { err = s.Run("pwd") })
		if err != nil || out.String() != "/\n" {
			t.Errorf("pwd after a refused pty: %q, %v", out.String(), err)
		}
	})
	t.Run("unknown subsystem refused", func(t *testing.T) {
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		within(t, 15*time.Second, "subsystem", func() { err = s.RequestSubsystem("netconf") })
		if err == nil {
			t.Error("subsystem netconf accepted")
		}
	})
	t.Run("malformed exec and subsystem payloads refused", func(t *testing.T) {
		// RFC 4254 6.5: one string each. A short length prefix, one that
		// overruns the payload, or bytes after the string are refused,
		// and the session still serves a well-formed request afterwards.
		for _, req := range []struct {
			typ     string
			payload []byte
		}{
			{"exec", []byte{0, 0}},
			{"exec", []byte{0, 0, 0, 9, 'p', 'w', 'd'}},
			{"exec", []byte{0, 0, 0, 3, 'p', 'w', 'd', 'x'}},
			{"subsystem", []byte{0, 0, 0, 4, 's', 'f', 't', 'p', 0}},
		} {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			var ok bool
			within(t, 15*time.Second, req.typ, func() { ok, err = s.SendRequest(req.typ, true, req.payload) })
			if err != nil || ok {
				t.Errorf("%s with payload %x: accepted %v, %v; want refused", req.typ, req.payload, ok, err)
			}
			var out bytes.Buffer
			s.Stdout = &out
			within(t, 15*time.Second, "pwd", func() { err = s.Run("pwd") })
			if err != nil || out.String() != "/\n" {
				t.Errorf("pwd after a refused %s: %q, %v", req.typ, out.String(), err)
			}
			s.Close()
		}
	})
	t.Run("direct-tcpip refused", func(t *testing.T) {
		var err error
		within(t, 15*time.Second, "direct-tcpip", func() {
			var fwd net.Conn
			if fwd, err = c.Dial("tcp", "127.0.0.1:1"); err == nil {
				fwd.Close()
			}
		})
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
			t.Errorf("direct-tcpip: %v, want a prohibited channel open failure", err)
		}
	})
	t.Run("tcpip-forward refused", func(t *testing.T) {
		var err error
		within(t, 15*time.Second, "tcpip-forward", func() {
			var l net.Listener
			if l, err = c.Listen("tcp", "127.0.0.1:0"); err == nil {
				l.Close()
			}
		})
		if err == nil {
			t.Error("remote port forwarding accepted")
		}
	})
	// The connection survived every refusal.
	out, _, code := run(t, c, "pwd")
	if out != "/\n" || code != 0 {
		t.Errorf("pwd at the end: %q, exit %d", out, code)
	}
}

// rawSFTP speaks SFTP v3 packets directly, for requests pkg/sftp's client
// does not send as such (FSETSTAT of times, REMOVE of a directory).
type rawSFTP struct {
	t    testing.TB
	sess *ssh.Session
	w    io.WriteCloser
	r    io.Reader
	id   uint32
}

const (
	fxpInit     = 1
	fxpOpen     = 3
	fxpClose    = 4
	fxpWrite    = 6
	fxpFsetstat = 10
	fxpRemove   = 13
	fxpStatus   = 101
	fxpHandle   = 102

	fxfRead   = 0x01
	fxfWrite  = 0x02
	fxfAppend = 0x04
	fxfCreat  = 0x08
	fxfTrunc  = 0x10

	attrPermissions = 0x04
	attrACModTime   = 0x08
)

func newRawSFTP(t testing.TB, c *ssh.Client) *rawSFTP {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	p := &rawSFTP{t: t, sess: s, w: w, r: r}
	t.Cleanup(func() { s.Close() })
	if err := p.send(fxpInit, binary.BigEndian.AppendUint32(nil, 3)); err != nil {
		t.Fatal(err)
	}
	if typ, _ := p.recv(); typ != 2 {
		t.Fatalf("SFTP init: reply type %d", typ)
	}
	return p
}

func (p *rawSFTP) send(typ byte, body []byte) error {
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	pkt = append(pkt, typ)
	_, err := p.w.Write(append(pkt, body...))
	return err
}

func (p *rawSFTP) recv() (byte, []byte) {
	p.t.Helper()
	var hdr [5]byte
	var data []byte
	var err error
	within(p.t, 30*time.Second, "SFTP reply", func() {
		if _, err = io.ReadFull(p.r, hdr[:]); err != nil {
			return
		}
		data = make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
		_, err = io.ReadFull(p.r, data)
	})
	if err != nil {
		p.t.Fatalf("SFTP reply: %v", err)
	}
	return hdr[4], data
}

func sshString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// call sends one request and returns the reply's type and body after the
// request ID.
func (p *rawSFTP) call(typ byte, body []byte) (byte, []byte) {
	p.t.Helper()
	return p.reply(p.post(typ, body))
}

// status returns a STATUS reply's code and message.
func (p *rawSFTP) status(typ byte, data []byte) (uint32, string) {
	p.t.Helper()
	if typ != fxpStatus || len(data) < 8 {
		p.t.Fatalf("want a STATUS reply, got type %d", typ)
	}
	n := binary.BigEndian.Uint32(data[4:])
	return binary.BigEndian.Uint32(data), string(data[8 : 8+n])
}

func (p *rawSFTP) ok(what string, typ byte, data []byte) {
	p.t.Helper()
	if code, msg := p.status(typ, data); code != 0 {
		p.t.Fatalf("%s: status %d %q", what, code, msg)
	}
}

// open opens name; perm, if non-zero, is sent as the permissions
// attribute, as OpenSSH's sftp and libssh2 do.
func (p *rawSFTP) open(name string, pflags uint32, perm os.FileMode) string {
	p.t.Helper()
	body := sshString(nil, name)
	body = binary.BigEndian.AppendUint32(body, pflags)
	if perm != 0 {
		body = binary.BigEndian.AppendUint32(body, attrPermissions)
		body = binary.BigEndian.AppendUint32(body, uint32(perm))
	} else {
		body = binary.BigEndian.AppendUint32(body, 0) // no attributes
	}
	typ, data := p.call(fxpOpen, body)
	if typ != fxpHandle {
		code, msg := p.status(typ, data)
		p.t.Fatalf("open %s: status %d %q", name, code, msg)
	}
	return string(data[4 : 4+binary.BigEndian.Uint32(data)])
}

func (p *rawSFTP) write(handle string, off uint64, b []byte) {
	p.t.Helper()
	body := binary.BigEndian.AppendUint64(sshString(nil, handle), off)
	typ, data := p.call(fxpWrite, sshString(body, string(b)))
	p.ok("write", typ, data)
}

// timesAttrs appends attributes that carry atime and mtime to b.
func timesAttrs(b []byte, atime, mtime time.Time) []byte {
	b = binary.BigEndian.AppendUint32(b, attrACModTime)
	b = binary.BigEndian.AppendUint32(b, uint32(atime.Unix()))
	return binary.BigEndian.AppendUint32(b, uint32(mtime.Unix()))
}

// post sends one request without waiting for its reply (reply reads it)
// and returns its ID.
func (p *rawSFTP) post(typ byte, body []byte) uint32 {
	p.t.Helper()
	p.id++
	if err := p.send(typ, append(binary.BigEndian.AppendUint32(nil, p.id), body...)); err != nil {
		p.t.Fatal(err)
	}
	return p.id
}

// reply reads the reply to the posted request id, the next one (replies
// come in request order), and returns its type and body after the ID.
func (p *rawSFTP) reply(id uint32) (byte, []byte) {
	p.t.Helper()
	typ, data := p.recv()
	if len(data) < 4 || binary.BigEndian.Uint32(data) != id {
		p.t.Fatalf("SFTP reply for request %d: %x", id, data)
	}
	return typ, data[4:]
}

func (p *rawSFTP) close(handle string) {
	p.t.Helper()
	typ, data := p.call(fxpClose, sshString(nil, handle))
	p.ok("close", typ, data)
}

// statTimes returns a file's atime and mtime on disk.
func statTimes(t testing.TB, p string) (atime, mtime time.Time) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return time.Unix(st.Atim.Unix()), fi.ModTime()
}

func TestSFTPSemantics(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	dir := e.UserDir("alice")
	disk := func(name string) string { return filepath.Join(dir, filepath.FromSlash(name)) }

	t.Run("concurrent out-of-order WriteAt", func(t *testing.T) {
		const size, chunk = 32 << 20, 32 << 10
		data := randomBytes(size)
		f, err := c.Create("/concurrent.bin")
		if err != nil {
			t.Fatal(err)
		}
		offs := make(chan int64, size/chunk)
		for _, i := range mrand.Perm(size / chunk) {
			offs <- int64(i * chunk)
		}
		close(offs)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for off := range offs {
					if _, err := f.WriteAt(data[off:off+chunk], off); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("concurrent.bin")); sum256(got) != sum256(data) {
			t.Fatalf("on disk: %d bytes, sha256 %s; want %d bytes, %s", len(got), sum256(got), len(data), sum256(data))
		}
	})

	t.Run("concurrent writes client option", func(t *testing.T) {
		conn := sshClient(t, e, "alice")
		cc, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		data := randomBytes(64 << 20)
		f, err := cc.Create("/sub/../concurrent64.bin")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(f, bytes.NewReader(data)); err != nil || n != int64(len(data)) {
			t.Fatalf("copy: %d, %v", n, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("concurrent64.bin")); sum256(got) != sum256(data) {
			t.Fatalf("on disk: %d bytes, sha256 differs", len(got))
		}
	})

	// Two handles of one upload: a write held back to ride with its
	// handle's close lands before an append through the other handle
	// that came after it (TestSFTPRandom, seed 192: "E56A52").
	t.Run("writes through two handles in order", func(t *testing.T) {
		if err := os.WriteFile(disk("two.txt"), []byte("alpha"), 0o644); err != nil {
			t.Fatal(err)
		}
		up, err := c.OpenFile("/two.txt", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		app, err := c.OpenFile("/two.txt", os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteAt([]byte("A52"), 3); err != nil {
			t.Fatal(err)
		}
		if _, err := app.WriteAt([]byte("E56"), 1); err != nil {
			t.Fatal(err)
		}
		for _, f := range []*sftp.File{app, up} { // the append's close first
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if got := mustRead(t, disk("two.txt")); string(got) != "\x00\x00\x00A52E56" {
			t.Errorf("two.txt = %q, want %q", got, "\x00\x00\x00A52E56")
		}
	})

	t.Run("open flags", func(t *testing.T) {
		mustWrite(t, disk("flags.txt"), []byte("0123456789"))
		if f, err := c.OpenFile("/flags.txt", os.O_WRONLY|os.O_CREATE|os.O_EXCL); err == nil {
			f.Close()
			t.Error("O_CREATE|O_EXCL opened an existing file")
		}
		if got := mustRead(t, disk("flags.txt")); string(got) != "0123456789" {
			t.Errorf("after O_EXCL: %q", got)
		}

		f, err := c.OpenFile("/flags.txt", os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("flags.txt")); string(got) != "0123456789abc" {
			t.Errorf("after O_APPEND: %q", got)
		}
		// curl -a and pkg/sftp without a Seek send offsets from 0: they
		// append too.
		f, err = c.OpenFile("/flags.txt", os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("xyz")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("flags.txt")); string(got) != "0123456789abcxyz" {
			t.Errorf("after O_APPEND from offset 0: %q", got)
		}

		f, err = c.OpenFile("/flags.txt", os.O_WRONLY|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("new")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("flags.txt")); string(got) != "new" {
			t.Errorf("after O_TRUNC: %q", got)
		}

		// EXCL without CREAT means nothing, as to open(2): the file is
		// replaced, not refused at the close as an exclusive create.
		f, err = c.OpenFile("/flags.txt", os.O_WRONLY|os.O_TRUNC|os.O_EXCL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("excl")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close of O_TRUNC|O_EXCL without O_CREATE: %v", err)
		}
		if got := mustRead(t, disk("flags.txt")); string(got) != "excl" {
			t.Errorf("after O_TRUNC|O_EXCL: %q", got)
		}
		f, err = c.OpenFile("/flags.txt", os.O_WRONLY|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("new")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}

		f, err = c.OpenFile("/flags-new.txt", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			t.Fatalf("O_CREATE|O_EXCL of a new file: %v", err)
		}
		f.Close()
		if _, err := os.Stat(disk("flags-new.txt")); err != nil {
			t.Error(err)
		}
		if _, err := c.OpenFile("/no-such-file", os.O_WRONLY); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("open a missing file without O_CREATE: %v, want not exist", err)
		}

		// OPEN with a permissions attribute (OpenSSH's put, libssh2) and
		// with APPEND, whose bit pkg/sftp's request server must not read
		// as an attribute flag.
		conn := sshClient(t, e, "alice")
		raw := newRawSFTP(t, conn)
		h := raw.open("/perm-0600.txt", fxfWrite|fxfCreat|fxfTrunc, 0o600)
		raw.write(h, 0, []byte("private"))
		raw.close(h)
		if fi, err := os.Stat(disk("perm-0600.txt")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("file created with permissions 0600: %v, %v", fi.Mode(), err)
		}
		h = raw.open("/perm-0600.txt", fxfWrite|fxfAppend, 0)
		raw.write(h, 7, []byte(" data")) // at the end, as OpenSSH's reput and paramiko send it
		raw.close(h)
		if got := mustRead(t, disk("perm-0600.txt")); string(got) != "private data" {
			t.Errorf("after an APPEND open: %q", got)
		}
		h = raw.open("/default-perm.txt", fxfWrite|fxfCreat|fxfTrunc, 0)
		raw.close(h)
		if fi, err := os.Stat(disk("default-perm.txt")); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("file created without permissions: %v, %v; want 0644", fi.Mode(), err)
		}
		// Unix mode bits on the wire: sticky kept, as open(2) in
		// sftp-server; setuid and setgid dropped.
		h = raw.open("/sticky.txt", fxfWrite|fxfCreat|fxfTrunc, 0o7755)
		raw.write(h, 0, []byte("x"))
		raw.close(h)
		if fi, err := os.Stat(disk("sticky.txt")); err != nil || fi.Mode() != os.ModeSticky|0o755 {
			t.Errorf("file created with permissions 07755: %v, %v; want %v", fi.Mode(), err, os.ModeSticky|0o755)
		}
	})

	t.Run("setstat", func(t *testing.T) {
		mustWrite(t, disk("attrs.txt"), []byte("0123456789"))
		if err := c.Truncate("/attrs.txt", 4); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("attrs.txt")); string(got) != "0123" {
			t.Errorf("after SETSTAT size 4: %q", got)
		}
		if err := c.Chmod("/attrs.txt", 0o640); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(disk("attrs.txt")); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("after chmod 0640: %v, %v", fi.Mode(), err)
		}
		atime, mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2019, 6, 7, 8, 9, 10, 0, time.UTC)
		if err := c.Chtimes("/attrs.txt", atime, mtime); err != nil {
			t.Fatal(err)
		}
		gotA, gotM := statTimes(t, disk("attrs.txt"))
		if !gotA.Equal(atime) || !gotM.Equal(mtime) {
			t.Errorf("after Chtimes: atime %v mtime %v, want %v %v", gotA.UTC(), gotM.UTC(), atime, mtime)
		}
		fi, err := c.Stat("/attrs.txt")
		if err != nil || !fi.ModTime().Equal(mtime) || fi.Mode().Perm() != 0o640 || fi.Size() != 4 {
			t.Errorf("STAT after setstat: %v %v %d, %v", fi.ModTime(), fi.Mode(), fi.Size(), err)
		}
	})

	t.Run("fsetstat times during an upload", func(t *testing.T) {
		mustWrite(t, disk("stamp.txt"), []byte("old content"))
		if err := os.Chmod(disk("stamp.txt"), 0o600); err != nil {
			t.Fatal(err)
		}
		conn := sshClient(t, e, "alice")
		raw := newRawSFTP(t, conn)
		h := raw.open("/stamp.txt", fxfWrite|fxfCreat|fxfTrunc, 0)
		part1, part2 := randomBytes(100_000), randomBytes(70_000)
		atime, mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), time.Date(2002, 3, 4, 5, 6, 7, 0, time.UTC)
		// As lftp sends them (SFtp.cc, FILE_SEND): the WRITEs, then
		// FSETSTAT and CLOSE, none waiting for the replies before it.
		// The times follow the writes sent before them, whenever those
		// are answered, and the commit keeps them.
		var ids []uint32
		for off := 0; off < len(part1)+len(part2); off += 32 << 10 {
			b := append(part1[:len(part1):len(part1)], part2...)[off:]
			ids = append(ids, raw.post(fxpWrite, sshString(binary.BigEndian.AppendUint64(sshString(nil, h), uint64(off)), string(b[:min(len(b), 32<<10)]))))
		}
		ids = append(ids, raw.post(fxpFsetstat, timesAttrs(sshString(nil, h), atime, mtime)))
		for _, id := range ids {
			typ, data := raw.reply(id)
			raw.ok("pipelined WRITE or FSETSTAT", typ, data)
		}
		if got := mustRead(t, disk("stamp.txt")); string(got) != "old content" {
			t.Errorf("during the upload the target shows %d bytes, want the old content", len(got))
		}
		raw.close(h)
		gotA, gotM := statTimes(t, disk("stamp.txt")) // before reading it: relatime
		if !gotM.Equal(mtime) || !gotA.Equal(atime) {
			t.Errorf("mtime %v atime %v on disk, want the FSETSTAT's %v %v", gotM.UTC(), gotA.UTC(), mtime, atime)
		}
		want := append(append([]byte(nil), part1...), part2...)
		if got := mustRead(t, disk("stamp.txt")); !bytes.Equal(got, want) {
			t.Errorf("after CLOSE: %d bytes, want %d", len(got), len(want))
		}
		if fi, err := os.Stat(disk("stamp.txt")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode of the replaced file: %v, %v; want 0600 kept", fi.Mode(), err)
		}
	})

	t.Run("remove of a directory", func(t *testing.T) {
		if err := os.MkdirAll(disk("rmdir-me"), 0o755); err != nil {
			t.Fatal(err)
		}
		conn := sshClient(t, e, "alice")
		raw := newRawSFTP(t, conn)
		code, msg := raw.status(raw.call(fxpRemove, sshString(nil, "/rmdir-me")))
		if code == 0 {
			t.Error("REMOVE of a directory succeeded")
		}
		t.Logf("REMOVE of a directory: status %d %q", code, msg)
		if fi, err := os.Stat(disk("rmdir-me")); err != nil || !fi.IsDir() {
			t.Errorf("directory gone after a refused REMOVE: %v", err)
		}
	})

	t.Run("rename", func(t *testing.T) {
		mustWrite(t, disk("ren-src"), []byte("source"))
		mustWrite(t, disk("ren-dst"), []byte("target"))
		if err := c.Rename("/ren-src", "/ren-dst"); err != nil {
			t.Fatalf("RENAME over an existing file: %v", err)
		}
		if got := mustRead(t, disk("ren-dst")); string(got) != "source" {
			t.Errorf("target after rename: %q", got)
		}
		if _, err := os.Stat(disk("ren-src")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("source after rename: %v", err)
		}
		mustWrite(t, disk("pren-src"), []byte("posix source"))
		mustWrite(t, disk("pren-dst"), []byte("posix target"))
		if err := c.PosixRename("/pren-src", "/pren-dst"); err != nil {
			t.Fatalf("posix-rename: %v", err)
		}
		if got := mustRead(t, disk("pren-dst")); string(got) != "posix source" {
			t.Errorf("target after posix-rename: %q", got)
		}
		if _, err := os.Stat(disk("pren-src")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("source after posix-rename: %v", err)
		}
		if err := c.Rename("/no-such", "/x"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("rename of a missing file: %v", err)
		}
	})

	t.Run("statvfs", func(t *testing.T) {
		var st *sftp.StatVFS
		var err error
		within(t, 15*time.Second, "statvfs", func() { st, err = c.StatVFS("/") })
		if err != nil {
			t.Fatal(err)
		}
		var want syscall.Statfs_t
		if err := syscall.Statfs(dir, &want); err != nil {
			t.Fatal(err)
		}
		if st.Bsize == 0 || st.Frsize == 0 || st.Blocks == 0 || st.Bfree > st.Blocks || st.Bavail > st.Blocks || st.Namemax == 0 {
			t.Errorf("statvfs: %+v", *st)
		}
		if st.Blocks != want.Blocks || st.Namemax != uint64(want.Namelen) {
			t.Errorf("statvfs blocks %d namemax %d; the agent's filesystem has %d, %d", st.Blocks, st.Namemax, want.Blocks, want.Namelen)
		}
		t.Logf("statvfs: total %d MiB, free %d MiB", st.TotalSpace()>>20, st.FreeSpace()>>20)
	})

	t.Run("hardlink@openssh.com", func(t *testing.T) {
		mustWrite(t, disk("hl-src"), []byte("x"))
		within(t, 15*time.Second, "hardlink", func() {
			if err := c.Link("/hl-src", "/hl-dst"); err != nil {
				t.Fatalf("hardlink: %v", err)
			}
		})
		src, err1 := os.Stat(disk("hl-src"))
		dst, err2 := os.Stat(disk("hl-dst"))
		if err1 != nil || err2 != nil || !os.SameFile(src, dst) {
			t.Fatalf("hl-dst is not a hard link of hl-src: %v %v", err1, err2)
		}
		if st := dst.Sys().(*syscall.Stat_t); st.Nlink != 2 {
			t.Errorf("link count %d, want 2", st.Nlink)
		}
		// Onto an existing name, of a directory, and out of the user's
		// root: refused, nothing made.
		within(t, 15*time.Second, "hardlink refusals", func() {
			if err := c.Link("/hl-src", "/hl-dst"); err == nil {
				t.Error("hard link over an existing name succeeded")
			}
			if err := c.Mkdir("/hl-dir"); err != nil {
				t.Fatal(err)
			}
			if err := c.Link("/hl-dir", "/hl-dir2"); err == nil {
				t.Error("hard link of a directory succeeded")
			}
			if err := c.Link("/../bob/secret", "/stolen"); err == nil {
				t.Error("hard link from outside the root succeeded")
			}
		})
		if _, err := os.Lstat(disk("hl-dir2")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("hl-dir2 exists: %v", err)
		}
		if _, err := os.Lstat(disk("stolen")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stolen exists: %v", err)
		}
	})

	t.Run("realpath", func(t *testing.T) {
		// As OpenSSH: "..", "." and links resolved on disk; every
		// component but the last must exist.
		if err := os.MkdirAll(disk("rp/a/deep"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("a/deep", disk("rp/ln")); err != nil {
			t.Fatal(err)
		}
		for in, want := range map[string]string{
			".": "/", "../../..": "/", "rp/a/../new": "/rp/new", "/rp/./a/": "/rp/a",
			"/rp/ln": "/rp/a/deep", "/rp/ln/..": "/rp/a", "/rp/ln/missing": "/rp/a/deep/missing",
		} {
			if got, err := c.RealPath(in); err != nil || got != want {
				t.Errorf("RealPath(%q) = %q, %v; want %q", in, got, err, want)
			}
		}
		for _, in := range []string{"/x/../y", "a/./b/..", "/rp/missing/x"} {
			if got, err := c.RealPath(in); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("RealPath(%q) = %q, %v; want no such file (a missing directory on the way)", in, got, err)
			}
		}
		// A file before "..", on disk or the session's upload in
		// progress (not on disk yet), is passed as sftp-server's
		// realpath passes it; a name after a file is ENOTDIR (no such
		// file). TestSFTPRandom, seed 1404.
		mustWrite(t, disk("rp/f"), []byte("file"))
		up, err := c.Create("/rp/up")
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		for _, file := range []string{"/rp/f", "/rp/up"} {
			for in, want := range map[string]string{file + "/..": "/rp", file + "/../new": "/rp/new", file + "/.": file} {
				if got, err := c.RealPath(in); err != nil || got != want {
					t.Errorf("RealPath(%q) = %q, %v; want %q", in, got, err, want)
				}
			}
			if got, err := c.RealPath(file + "/x"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("RealPath(%q) = %q, %v; want no such file (a name inside a file)", file+"/x", got, err)
			}
		}
	})

	t.Run("symlinks", func(t *testing.T) {
		mustWrite(t, disk("links/target.txt"), []byte("pointed at"))
		if err := c.Symlink("target.txt", "/links/rel"); err != nil {
			t.Fatalf("symlink: %v", err)
		}
		if got, err := os.Readlink(disk("links/rel")); err != nil || got != "target.txt" {
			t.Errorf("link on disk: %q, %v", got, err)
		}
		if got, err := c.ReadLink("/links/rel"); err != nil || got != "target.txt" {
			t.Errorf("READLINK: %q, %v", got, err)
		}
		fi, err := c.Lstat("/links/rel")
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("LSTAT of a link: %v, %v", fi, err)
		}
		fi, err = c.Stat("/links/rel")
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len("pointed at")) {
			t.Errorf("STAT through a link: %v, %v", fi, err)
		}
		// An absolute target is the user's tree: stored relative, so it
		// resolves the same in the container.
		if err := c.Symlink("/links/target.txt", "/abs"); err != nil {
			t.Fatalf("symlink to an absolute target: %v", err)
		}
		if got, err := os.ReadFile(disk("abs")); err != nil || string(got) != "pointed at" {
			t.Errorf("absolute link resolved on disk: %q, %v", got, err)
		}
		for _, target := range []string{"../../../../etc", "../../../../../../etc/passwd", "../x"} {
			if err := c.Symlink(target, "/escape"); err == nil {
				t.Errorf("symlink to %q accepted", target)
			}
			if _, err := os.Lstat(disk("escape")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("symlink to %q left %v", target, err)
			}
		}
	})

	t.Run("remove and mkdir errors", func(t *testing.T) {
		err := c.Remove("/missing-file")
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Remove of a missing file: %v, want os.ErrNotExist", err)
		}
		mustWrite(t, disk("full/file"), []byte("x"))
		if err := c.Remove("/full"); err == nil {
			t.Error("Remove of a non-empty directory succeeded")
		}
		if err := c.RemoveDirectory("/full"); err == nil {
			t.Error("RemoveDirectory of a non-empty directory succeeded")
		}
		if _, err := os.Stat(disk("full/file")); err != nil {
			t.Errorf("file in the directory: %v", err)
		}
		if err := c.RemoveDirectory("/full/file"); err == nil {
			t.Error("RMDIR of a file succeeded")
		}
		if err := c.Mkdir("/full"); err == nil {
			t.Error("Mkdir of an existing directory succeeded")
		}
		if err := c.Mkdir("/nope/deeper"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Mkdir under a missing parent: %v", err)
		}
		if err := c.Mkdir("/made"); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(disk("made")); err != nil || !fi.IsDir() {
			t.Errorf("made: %v", err)
		}
		if err := c.RemoveDirectory("/made"); err != nil {
			t.Error(err)
		}
		if err := c.Remove("/full/file"); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(disk("full/file")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Remove: %v", err)
		}
	})

	t.Run("upload is atomic", func(t *testing.T) {
		mustWrite(t, disk("atomic.txt"), []byte("old content"))
		f, err := c.Create("/atomic.txt")
		if err != nil {
			t.Fatal(err)
		}
		data := randomBytes(1 << 20)
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("atomic.txt")); string(got) != "old content" {
			t.Errorf("during the upload the target shows %d bytes, want the old content", len(got))
		}
		if tmp := agenttest.TempFilesUnder(t, dir); len(tmp) != 1 {
			t.Errorf("temp files during the upload: %v", tmp)
		}
		if _, err := f.Write(data[len(data)/2:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, disk("atomic.txt")); !bytes.Equal(got, data) {
			t.Errorf("after close: %d bytes", len(got))
		}
	})

	if tmp := agenttest.TempFilesUnder(t, dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	e.AgentIdle(t)
}

// TestAbortedUploadKeepsOldFile: the client's TCP connection dies in the
// middle of an upload (no CLOSE); the old file stays and no temp file is
// left.
func TestAbortedUploadKeepsOldFile(t *testing.T) {
	e := start(t, nil)
	target := filepath.Join(e.UserDir("alice"), "keep.txt")
	conn, err := net.DialTimeout("tcp", e.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sc, chans, reqs, err := ssh.NewClientConn(conn, e.Addr, clientConfig("alice", ssh.Password(gwtest.Users["alice"])))
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()
	c, err := sftp.NewClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustWrite(t, target, []byte("old content"))

	f, err := c.Create("/keep.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randomBytes(3 << 20)); err != nil {
		t.Fatal(err)
	}
	if tmp := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(tmp) != 1 {
		t.Fatalf("temp files during the upload: %v", tmp)
	}
	conn.Close() // the cable, not the protocol: no CLOSE, no EOF on the channel

	if !eventually(10*time.Second, func() bool { return len(agenttest.TempFilesUnder(t, e.UserDir("alice"))) == 0 }) {
		t.Errorf("temp files left 10 s after the connection died: %v", agenttest.TempFilesUnder(t, e.UserDir("alice")))
	}
	if got := mustRead(t, target); string(got) != "old content" {
		t.Errorf("target after the aborted upload: %d bytes, want the old content", len(got))
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}
