// Package kubetest runs a real Kubernetes API server for tests: a
// kube-apiserver built from the Go module proxy (k8s.io/kubernetes at
// Version, in a module of its own, never the project's go.mod) over
// Debian's etcd (the etcd-server package).
//
// There is no kubelet, scheduler or controller manager: Pods are API
// objects only, and a test writes their status itself (a loopback pod IP,
// ready containers) and runs real agents on those addresses.
//
// The binary is built once into a cache directory keyed by the version
// (see BinaryPath): about 6 minutes and 2 GB of build cache on a 2-core
// machine, 146 MB of binary. "go run ./internal/kubetest/build" builds it
// ahead of the tests, as CI does. Start skips the test when etcd is not
// installed, and builds the binary when it is missing unless -short;
// with UPGATE_REQUIRE_INTEROP=1 (CI) a missing etcd fails instead.
//
// Another version: in an empty directory, write a go.mod requiring
// k8s.io/kubernetes at it, with each "k8s.io/NAME => ./staging/..." line
// of that version's own go.mod (go mod download -json prints where it is)
// replaced by "k8s.io/NAME => k8s.io/NAME v0.X.Y", and a tools.go
// importing k8s.io/kubernetes/cmd/kube-apiserver; run GOFLAGS=-mod=mod go
// mod tidy; copy go.mod and go.sum over kube-apiserver.go.mod and
// kube-apiserver.go.sum; change Version.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Version is the kube-apiserver built and run.
const Version = "v1.34.4"

// The build module: k8s.io/kubernetes at Version, with each of its
// staging modules (replaced by ./staging paths in its own go.mod, which
// are not in its module zip) pinned to the matching published v0.X.Y.
// Generated as ../shared/research/kube-apiserver.md describes; kept here
// as plain files (a go.mod here would make a module of this directory).
var (
	//go:embed kube-apiserver.go.mod
	buildMod []byte
	//go:embed kube-apiserver.go.sum
	buildSum []byte
)

const buildTools = "//go:build tools\n\npackage kapi\n\nimport _ \"k8s.io/kubernetes/cmd/kube-apiserver\"\n"

// BinaryPath is where the kube-apiserver of Version is cached:
// $UPGATE_KUBE_APISERVER if set, else
// <os.UserCacheDir>/upgate/kube-apiserver-<Version>/kube-apiserver.
func BinaryPath() (string, error) {
	if p := os.Getenv("UPGATE_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	return filepath.Join(dir, "upgate", "kube-apiserver-"+Version, "kube-apiserver"), nil
}

// Build builds the kube-apiserver into BinaryPath unless it is there
// already, writing the go command's output to out, and returns its path.
// Extra arguments go to "go build" (such as "-p", "2").
func Build(ctx context.Context, out io.Writer, args ...string) (string, error) {
	bin, err := BinaryPath()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	dir, err := os.MkdirTemp("", "upgate-kapi-")
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	defer os.RemoveAll(dir)
	for name, b := range map[string][]byte{"go.mod": buildMod, "go.sum": buildSum, "tools.go": []byte(buildTools)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return "", fmt.Errorf("kubetest: %w", err)
		}
	}
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"build", "-trimpath", "-o", tmp}, args...), "k8s.io/kubernetes/cmd/kube-apiserver")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	// The build module's go.mod says go 1.26: no toolchain switch.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("kubetest: go build kube-apiserver %s: %w", Version, err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	return bin, nil
}

// required reports whether missing tools fail tests instead of skipping
// them (CI).
func required() bool { return os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" }

// Server is a running etcd and kube-apiserver.
type Server struct {
	// URL is the API server's address, https://127.0.0.1:PORT.
	URL string
	// CA is the PEM bundle that verifies its serving certificate.
	CA []byte
	// AdminToken authenticates as a member of system:masters.
	AdminToken string
	// Dir holds the data, certificates and logs.
	Dir string

	procs []proc // in start order
}

// proc is a started process and the result of its Wait.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

// Start runs an API server for the test and stops it in t.Cleanup. It
// skips the test where etcd is missing (fails with
// UPGATE_REQUIRE_INTEROP=1) and builds the kube-apiserver where it is
// missing (skips under -short).
func Start(t testing.TB) *Server {
	t.Helper()
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		if required() {
			t.Fatal("kubetest: etcd not found (apt-get install etcd-server)")
		}
		t.Skip("kubetest: etcd not found (apt-get install etcd-server); UPGATE_REQUIRE_INTEROP=1 makes this a failure")
	}
	bin, err := BinaryPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if testing.Short() && !required() {
			t.Skipf("kubetest: %s missing and -short: build it with go run ./internal/kubetest/build", bin)
		}
		t.Logf("kubetest: building kube-apiserver %s into %s (about 6 minutes, once)", Version, bin)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		var out bytes.Buffer
		_, err := Build(ctx, &out)
		cancel()
		if err != nil {
			t.Fatalf("%v\n%s", err, out.Bytes())
		}
	}
	dir, err := os.MkdirTemp("", "upgate-kubetest-")
	if err != nil {
		t.Fatal(err)
	}
	s, err := start(etcd, bin, dir)
	t.Cleanup(func() {
		if s != nil {
			s.stop()
		}
		if t.Failed() {
			for _, f := range []string{"etcd.log", "kube-apiserver.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					t.Logf("%s (last 4 KiB):\n%s", f, tail(b, 4096))
				}
			}
		}
		os.RemoveAll(dir)
	})
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(dir, "kube-apiserver.log")); rerr == nil {
			t.Logf("kube-apiserver.log (last 4 KiB):\n%s", tail(b, 4096))
		}
		t.Fatal(err)
	}
	return s
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freePort returns a TCP port free on 127.0.0.1 just now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(etcdBin, apiserverBin, dir string) (*Server, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("kubetest: %w", err)
		}
		ports[i] = p
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	s := &Server{Dir: dir, URL: fmt.Sprintf("https://127.0.0.1:%d", ports[2])}

	var b [16]byte
	_, _ = rand.Read(b[:])
	s.AdminToken = hex.EncodeToString(b[:])
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(s.AdminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}

	etcd := exec.Command(etcdBin,
		"--name", "default",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL)
	if err := s.run(etcd, filepath.Join(dir, "etcd.log")); err != nil {
		return s, err
	}
	apiserver := exec.Command(apiserverBin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--profiling=false")
	if err := s.run(apiserver, filepath.Join(dir, "kube-apiserver.log")); err != nil {
		return s, err
	}
	if err := s.waitReady(2 * time.Minute); err != nil {
		return s, err
	}
	return s, nil
}

// run starts cmd with its output in logFile, in a process group of its
// own. It dies with the test process (Pdeathsig), should that end without
// its cleanup (a test timeout panics past t.Cleanup).
func (s *Server) run(cmd *exec.Cmd, logFile string) error {
	f, err := os.Create(logFile)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("kubetest: start %s: %w", filepath.Base(cmd.Path), err)
	}
	done := make(chan error, 1)
	go func() {
		done <- cmd.Wait()
		f.Close()
	}()
	s.procs = append(s.procs, proc{cmd: cmd, done: done})
	return nil
}

// waitReady polls /readyz until it answers 200, the server exits or d
// passes. It also loads the serving CA.
func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	certFile := filepath.Join(s.Dir, "certs", "apiserver.crt")
	var last error
	for time.Now().Before(deadline) {
		for _, p := range s.procs {
			select {
			case err := <-p.done:
				p.done <- err
				return fmt.Errorf("kubetest: %s exited while starting: %v", filepath.Base(p.cmd.Path), err)
			default:
			}
		}
		if ca, err := os.ReadFile(certFile); err == nil {
			s.CA = ca
			last = s.probe()
			if last == nil {
				return nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: kube-apiserver not ready within %v: %v", d, last)
}

func (s *Server) probe() error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CA) {
		return errors.New("no certificate in apiserver.crt")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", s.URL+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, tail(body, 512))
	}
	return nil
}

// stop ends the API server, then etcd: SIGTERM, and SIGKILL to the process
// group after 10 s.
func (s *Server) stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	s.procs = nil
}

// Kubeconfig writes a kubeconfig file into dir for server (s.URL when
// empty) that authenticates with token, and returns its path.
func (s *Server) Kubeconfig(dir, server, token string) (string, error) {
	if server == "" {
		server = s.URL
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, s.CA, 0o644); err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	doc := strings.Join([]string{
		"apiVersion: v1",
		"kind: Config",
		"clusters:",
		"- name: test",
		"  cluster: {server: \"" + server + "\", certificate-authority: \"" + caFile + "\", tls-server-name: \"127.0.0.1\"}",
		"users:",
		"- name: test",
		"  user: {token: \"" + token + "\"}",
		"contexts:",
		"- name: test",
		"  context: {cluster: test, user: test}",
		"current-context: test",
		"",
	}, "\n")
	f, err := os.CreateTemp(dir, "kubeconfig-")
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	if _, err := f.WriteString(doc); err != nil {
		f.Close()
		return "", fmt.Errorf("kubetest: %w", err)
	}
	return f.Name(), f.Close()
}
