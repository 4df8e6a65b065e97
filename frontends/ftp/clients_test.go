package ftp_test

// Real FTP clients against the gateway: curl and Python's ftplib, plain
// and FTPS with a throwaway CA. Each run is bounded (exec.CommandContext);
// results are checked in the agent's directory.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/testpki"
)

// cliTimeout bounds one client run.
const cliTimeout = 90 * time.Second

// runCli runs a client program and returns its stdout; a non-zero exit is
// returned as an error carrying stderr.
func runCli(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %q: no result within %v", name, args, cliTimeout)
	}
	if err != nil {
		return stdout.String(), errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}

// mustCli is runCli that fails the test on a non-zero exit.
func mustCli(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runCli(t, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return out
}

// startFTPS runs a gateway with FTPS (AUTH TLS) on, optionally required,
// with a certificate for 127.0.0.1 from a throwaway CA.
func startFTPS(t testing.TB, required bool) (*env, *testpki.PKI) {
	t.Helper()
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "127.0.0.1", testpki.Loopback, false)
	e := start(t, func(cfg *config.Config) {
		cfg.FTP.TLS = config.TLS{Cert: cert, Key: key, Required: required}
	})
	return e, pki
}

// localFile writes data to a file in a fresh temp dir.
func localFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientCurl(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := start(t, nil)
	dir := e.UserDir("alice")
	base := "ftp://" + e.Addr
	auth := "alice:" + gwtest.Users["alice"]
	data := noise(t, 300<<10)
	src := localFile(t, "up.php", data)

	// Upload, download.
	mustCli(t, curl, "-sS", "-u", auth, "-T", src, base+"/up.php")
	wantFile(t, filepath.Join(dir, "up.php"), data)
	out := filepath.Join(t.TempDir(), "down.php")
	mustCli(t, curl, "-sS", "-u", auth, "-o", out, base+"/up.php")
	wantFile(t, out, data)

	// A directory listing (the URL ends with a slash): LIST in ls -l
	// form, dotfiles included.
	putFile(t, e, "alice", "site/index.php", []byte("<?php"), 0o644)
	putFile(t, e, "alice", "site/.htaccess", []byte("x"), 0o644)
	putDir(t, e, "alice", "site/lib", 0o755)
	ls := parseLS(t, []byte(mustCli(t, curl, "-sS", "-u", auth, base+"/site/")))
	if keys := sortedKeys(ls); !slices.Equal(keys, []string{".htaccess", "index.php", "lib"}) {
		t.Errorf("curl listing: %q", keys)
	}
	if ls["index.php"].perm != "-rw-r--r--" || ls["lib"].perm != "drwxr-xr-x" || ls["index.php"].size != 5 {
		t.Errorf("curl listing entries: %+v", ls)
	}
	// --list-only is NLST.
	names := strings.Fields(mustCli(t, curl, "-sS", "-u", auth, "--list-only", base+"/site/"))
	if !slices.Equal(sorted(names), []string{".htaccess", "index.php", "lib"}) {
		t.Errorf("curl --list-only: %q", names)
	}

	// SITE CHMOD after the upload ("-" runs the quote command after the
	// transfer), and before a transfer on an existing file.
	mustCli(t, curl, "-sS", "-u", auth, "-T", src, "-Q", "-SITE CHMOD 640 perm.php", base+"/perm.php")
	wantFile(t, filepath.Join(dir, "perm.php"), data)
	wantMode(t, filepath.Join(dir, "perm.php"), 0o640)
	mustCli(t, curl, "-sS", "-u", auth, "-Q", "SITE CHMOD 600 perm.php", "-o", os.DevNull, base+"/up.php")
	wantMode(t, filepath.Join(dir, "perm.php"), 0o600)
	// A failing quote command fails curl.
	if _, err := runCli(t, curl, "-sS", "-u", auth, "-Q", "SITE CHMOD 600 nothere.php", "-o", os.DevNull, base+"/up.php"); err == nil {
		t.Errorf("curl with a failing SITE CHMOD succeeded")
	}

	// --ftp-create-dirs: CWD fails, MKD each level, upload.
	mustCli(t, curl, "-sS", "-u", auth, "--ftp-create-dirs", "-T", src, base+"/deep/er/nest.php")
	wantFile(t, filepath.Join(dir, "deep", "er", "nest.php"), data)
	// Again, now that the directories exist.
	mustCli(t, curl, "-sS", "-u", auth, "--ftp-create-dirs", "-T", src, base+"/deep/er/nest2.php")
	wantFile(t, filepath.Join(dir, "deep", "er", "nest2.php"), data)

	// A download of a missing file fails (curl exit 78: remote file not found).
	if _, err := runCli(t, curl, "-sS", "-u", auth, "-o", os.DevNull, base+"/nothere.php"); err == nil {
		t.Errorf("curl download of a missing file succeeded")
	}
	// A wrong password fails (curl exit 67: login denied) and writes nothing.
	if _, err := runCli(t, curl, "-sS", "-u", "alice:wrong", "-T", src, base+"/denied.php"); err == nil {
		t.Errorf("curl with a wrong password succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "denied.php")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("denied.php: %v", err)
	}
	if got := agenttest.TempFiles(t, dir); len(got) != 0 {
		t.Errorf("temp files left: %q", got)
	}
	e.AgentIdle(t)
}

func TestClientCurlFTPS(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	data := noise(t, 200<<10)

	t.Run("Optional", func(t *testing.T) {
		e, pki := startFTPS(t, false)
		dir := e.UserDir("alice")
		c := ctlDial(t, e.Addr)
		if msg := c.must(211, "FEAT"); !strings.Contains(msg, "AUTH TLS") || !strings.Contains(msg, "PROT") {
			t.Errorf("FEAT with a certificate lacks AUTH TLS / PROT: %q", msg)
		}
		src := localFile(t, "tls.php", data)
		base := "ftp://" + e.Addr
		auth := "alice:" + gwtest.Users["alice"]
		mustCli(t, curl, "-sS", "--ssl-reqd", "--cacert", pki.CAFile, "-u", auth, "-T", src, base+"/tls.php")
		wantFile(t, filepath.Join(dir, "tls.php"), data)
		out := filepath.Join(t.TempDir(), "back.php")
		mustCli(t, curl, "-sS", "--ssl-reqd", "--cacert", pki.CAFile, "-u", auth, "-o", out, base+"/tls.php")
		wantFile(t, out, data)
		if ls := parseLS(t, []byte(mustCli(t, curl, "-sS", "--ssl-reqd", "--cacert", pki.CAFile, "-u", auth, base+"/"))); ls["tls.php"].size != int64(len(data)) {
			t.Errorf("FTPS listing: %+v", ls)
		}
		// Without the CA the certificate is not trusted.
		if _, err := runCli(t, curl, "-sS", "--ssl-reqd", "-u", auth, "-o", os.DevNull, base+"/tls.php"); err == nil {
			t.Errorf("curl trusted the test certificate without its CA")
		}
		// Plain FTP still works when TLS is optional.
		mustCli(t, curl, "-sS", "-u", auth, "-T", src, base+"/plain.php")
		wantFile(t, filepath.Join(dir, "plain.php"), data)
		e.AgentIdle(t)
	})

	t.Run("Required", func(t *testing.T) {
		e, pki := startFTPS(t, true)
		dir := e.UserDir("alice")
		// A plain login is refused at USER (ftpserverlib: 421, hang up).
		c := ctlDial(t, e.Addr)
		if code, msg := c.cmd("USER alice"); code != 421 || !strings.Contains(msg, "TLS") {
			t.Errorf("plain USER with TLS required: %d %q", code, msg)
		}
		src := localFile(t, "req.php", data)
		base := "ftp://" + e.Addr
		auth := "alice:" + gwtest.Users["alice"]
		if _, err := runCli(t, curl, "-sS", "-u", auth, "-T", src, base+"/plain.php"); err == nil {
			t.Errorf("plain curl upload succeeded with TLS required")
		}
		if _, err := os.Stat(filepath.Join(dir, "plain.php")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("plain upload with TLS required: %v", err)
		}
		mustCli(t, curl, "-sS", "--ssl-reqd", "--cacert", pki.CAFile, "-u", auth, "-T", src, base+"/req.php")
		wantFile(t, filepath.Join(dir, "req.php"), data)
		out := filepath.Join(t.TempDir(), "back.php")
		mustCli(t, curl, "-sS", "--ssl-reqd", "--cacert", pki.CAFile, "-u", auth, "-o", out, base+"/req.php")
		wantFile(t, out, data)
		// Over a TLS control connection, a clear data channel (PROT C) is
		// refused when TLS is required; PROT P works.
		// TLS 1.1 is refused.
		oc := ctlDial(t, e.Addr)
		oc.must(234, "AUTH TLS")
		old := tls.Client(oc.nc, &tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err := old.Handshake(); err == nil {
			t.Errorf("TLS 1.1 handshake accepted (version %x)", old.ConnectionState().Version)
		}
		// The data channel resumes the control connection's TLS session,
		// as lftp and FileZilla (vsftpd's require_ssl_reuse) expect.
		tc := ctlDial(t, e.Addr)
		tc.must(234, "AUTH TLS")
		tlsConf := &tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		conn := tls.Client(tc.nc, tlsConf)
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		tc.nc, tc.tp = conn, textproto.NewConn(conn)
		tc.must(331, "USER alice")
		tc.must(230, "PASS %s", gwtest.Users["alice"])
		tc.must(200, "TYPE I")
		tc.must(200, "PBSZ 0")
		tc.must(200, "PROT C")
		clear := tc.pasv()
		if code, msg := tc.cmd("RETR req.php"); code != 421 || !strings.Contains(msg, "TLS") {
			t.Errorf("RETR over a clear data channel with TLS required: %d %q", code, msg)
		}
		clear.Close()
		tc.must(200, "PROT P")
		dc := tls.Client(tc.pasv(), tlsConf)
		tc.must(150, "RETR req.php")
		got, err := io.ReadAll(dc)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("RETR over PROT P: %d bytes, %v", len(got), err)
		}
		if !dc.ConnectionState().DidResume {
			t.Error("the PROT P data connection did not resume the control connection's TLS session")
		}
		dc.Close()
		tc.expect(226, "RETR over PROT P")

		// jlaffaye/ftp with explicit TLS too.
		jc, err := ftp.Dial(e.Addr, ftp.DialWithTimeout(10*time.Second),
			ftp.DialWithExplicitTLS(&tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1"}))
		if err != nil {
			t.Fatal(err)
		}
		defer jc.Quit()
		if err := jc.Login("alice", gwtest.Users["alice"]); err != nil {
			t.Fatal(err)
		}
		if err := jc.Stor("go.php", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		wantFile(t, filepath.Join(dir, "go.php"), data)
		if got := agenttest.TempFiles(t, dir); len(got) != 0 {
			t.Errorf("temp files left: %q", got)
		}
		e.AgentIdle(t)
	})
}

// ftplibScript drives Python's ftplib: argv is host port user password
// mode [args...]; it prints one JSON object.
const ftplibScript = `
import ftplib, hashlib, io, json, ssl, sys

host, port, user, pw, mode = sys.argv[1:6]
args = sys.argv[6:]
out = {}

def connect(ca=None):
    if ca:
        f = ftplib.FTP_TLS(context=ssl.create_default_context(cafile=ca), timeout=30)
    else:
        f = ftplib.FTP(timeout=30)
    f.connect(host, int(port))
    f.login(user, pw)
    if ca:
        f.prot_p()
    return f

if mode == "mlsd":
    f = connect()
    out["entries"] = {name: facts for name, facts in f.mlsd("/")}
    out["sub"] = {name: facts for name, facts in f.mlsd("sub")}
    out["narrowed"] = {name: facts for name, facts in f.mlsd("/", facts=["type", "unix.mode"])}
elif mode == "mfmt":
    f = connect()
    f.storbinary("STOR mf.php", io.BytesIO(b"<?php echo 1;"))
    out["mfmt"] = f.sendcmd("MFMT 20200102030405 mf.php")
    out["mdtm"] = f.sendcmd("MDTM mf.php")
elif mode == "resume":
    data = open(args[0], "rb").read()
    n = int(args[1])
    f = connect()
    f.storbinary("STOR resume.bin", io.BytesIO(data[:n]))
    out["first"] = f.size("resume.bin")
    f.storbinary("STOR resume.bin", io.BytesIO(data[n:]), rest=n)
    out["size"] = f.size("resume.bin")
elif mode == "tls":
    ca, local = args
    data = open(local, "rb").read()
    f = connect(ca)
    f.storbinary("STOR tls.bin", io.BytesIO(data))
    buf = io.BytesIO()
    f.retrbinary("RETR tls.bin", buf.write)
    out["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    out["mdtm"] = f.sendcmd("MDTM tls.bin")
elif mode == "habits":
    f = connect()
    out["mlsd_type"] = {name: facts for name, facts in f.mlsd("/d")}["ln"]["type"]
    out["stat"] = f.sendcmd("STAT /d")
    # Names as bytes: Latin-1 maps each byte to one character.
    f.encoding = "latin-1"
    f.storbinary("STOR /caf\xe9 \xff.txt", io.BytesIO(b"latin1"))
    out["nlst"] = [n.encode("latin-1").hex() for n in f.nlst("/") if "caf" in n]
    out["epsv_all"] = f.sendcmd("EPSV ALL")[:3]
    try:
        f.sendcmd("PASV")
        out["pasv_after"] = "accepted"
    except ftplib.error_perm as e:
        out["pasv_after"] = str(e)[:3]
else:
    sys.exit("unknown mode " + mode)
f.quit()
print(json.dumps(out))
`

// runFtplib runs ftplibScript as alice against e and decodes its output.
func runFtplib(t testing.TB, e *env, mode string, args ...string) map[string]any {
	t.Helper()
	py := gwtest.RequireTool(t, "python3")
	script := filepath.Join(t.TempDir(), "ftplib_client.py")
	if err := os.WriteFile(script, []byte(ftplibScript), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.Addr)
	out := mustCli(t, py, append([]string{script, host, port, "alice", gwtest.Users["alice"], mode}, args...)...)
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ftplib output %q: %v", out, err)
	}
	return res
}

func TestClientFtplib(t *testing.T) {
	gwtest.RequireTool(t, "python3")

	t.Run("MLSD", func(t *testing.T) {
		e := start(t, nil)
		mt := time.Date(2022, 6, 7, 8, 9, 10, 0, time.UTC)
		p := putFile(t, e, "alice", "a.php", []byte("<?php"), 0o644)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
		putFile(t, e, "alice", ".env", []byte("K=V"), 0o600)
		putFile(t, e, "alice", "sub/b.php", []byte("b"), 0o644)
		res := runFtplib(t, e, "mlsd")
		ents, _ := res["entries"].(map[string]any)
		if keys := sortedKeys(ents); !slices.Equal(keys, []string{".env", "a.php", "sub"}) {
			t.Errorf("mlsd names %q (no cdir/pdir entries, dotfiles included)", keys)
		}
		for name, v := range ents {
			facts, _ := v.(map[string]any)
			for _, f := range []string{"type", "size", "modify", "unix.mode"} {
				if _, ok := facts[f]; !ok {
					t.Errorf("mlsd %s lacks %s: %v", name, f, facts)
				}
			}
			if ty, _ := facts["type"].(string); ty == "cdir" || ty == "pdir" {
				t.Errorf("mlsd entry %s of type %s", name, ty)
			}
		}
		if a, _ := ents["a.php"].(map[string]any); a["type"] != "file" || a["size"] != "5" || a["modify"] != "20220607080910" || a["unix.mode"] != "0644" {
			t.Errorf("mlsd a.php: %v", a)
		}
		if e, _ := ents[".env"].(map[string]any); e["unix.mode"] != "0600" {
			t.Errorf("mlsd .env: %v", e)
		}
		if s, _ := ents["sub"].(map[string]any); s["type"] != "dir" || s["unix.mode"] != "0755" {
			t.Errorf("mlsd sub: %v", s)
		}
		if sub, _ := res["sub"].(map[string]any); len(sub) != 1 || sub["b.php"] == nil {
			t.Errorf("mlsd sub: %v", sub)
		}
		// ftplib's mlsd(facts=...) first sends "OPTS MLST type;unix.mode;":
		// the entries then carry those facts only.
		narrowed, _ := res["narrowed"].(map[string]any)
		if a, _ := narrowed["a.php"].(map[string]any); len(a) != 2 || a["type"] != "file" || a["unix.mode"] != "0644" {
			t.Errorf("mlsd(facts=[type, unix.mode]) a.php: %v", a)
		}
		e.AgentIdle(t)
	})

	t.Run("MFMT", func(t *testing.T) {
		e := start(t, nil)
		res := runFtplib(t, e, "mfmt")
		if m, _ := res["mfmt"].(string); !strings.HasPrefix(m, "213 ") {
			t.Errorf("MFMT: %q", m)
		}
		if res["mdtm"] != "213 20200102030405" {
			t.Errorf("MDTM after MFMT: %q", res["mdtm"])
		}
		p := filepath.Join(e.UserDir("alice"), "mf.php")
		wantFile(t, p, []byte("<?php echo 1;"))
		wantMtime(t, p, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
		e.AgentIdle(t)
	})

	t.Run("RestResume", func(t *testing.T) {
		e := start(t, nil)
		data := noise(t, 2<<20+333)
		const n = 700_001
		res := runFtplib(t, e, "resume", localFile(t, "resume.bin", data), "700001")
		if res["first"] != float64(n) || res["size"] != float64(len(data)) {
			t.Errorf("sizes: after the first part %v, after the resume %v", res["first"], res["size"])
		}
		p := filepath.Join(e.UserDir("alice"), "resume.bin")
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Errorf("resumed upload: %d bytes, sha256 %x, want %d bytes %x", len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
		}
		e.AgentIdle(t)
	})

	t.Run("FTP_TLS", func(t *testing.T) {
		e, pki := startFTPS(t, true)
		data := noise(t, 500<<10)
		res := runFtplib(t, e, "tls", pki.CAFile, localFile(t, "tls.bin", data))
		sum := sha256.Sum256(data)
		if res["sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("FTP_TLS round trip: sha256 %v, want %x", res["sha256"], sum)
		}
		if m, _ := res["mdtm"].(string); !strings.HasPrefix(m, "213 ") {
			t.Errorf("MDTM over TLS: %q", m)
		}
		wantFile(t, filepath.Join(e.UserDir("alice"), "tls.bin"), data)
		e.AgentIdle(t)
	})
}
