package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog's flush daemon, started by its init.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// password is every test user's.
const password = "kube-pw"

// env is the gateway under test and what it sees.
type env struct {
	c     *cluster
	srv   *server.Server
	proxy *proxy
	port  int // every agent's port
}

func (e *env) ftp(t *testing.T, user string) (*ftp.ServerConn, error) {
	t.Helper()
	fc, err := ftp.Dial(e.srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Login(user, password); err != nil {
		fc.Quit()
		return nil, err
	}
	t.Cleanup(func() { fc.Quit() })
	return fc, nil
}

// sftp logs user in over SSH; the banner is what the server showed
// during authentication (why a login failed).
func (e *env) sftp(t *testing.T, user string) (*sftp.Client, string, error) {
	t.Helper()
	var banner strings.Builder
	conn, err := ssh.Dial("tcp", e.srv.SFTPAddr.String(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		BannerCallback:  func(msg string) error { banner.WriteString(msg); return nil },
		Timeout:         10 * time.Second,
	})
	if err != nil {
		return nil, banner.String(), err
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c, banner.String(), nil
}

func sftpPut(c *sftp.Client, name, content string) error {
	f, err := c.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(content)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// gatewayConfig is the gateway's configuration: agent dev finds pods in
// the namespace dev by the label upgate.dev/user (as deploy/ does), agent
// own in a namespace per user; alice and bob use dev, carol and dave own.
func gatewayConfig(t *testing.T, kubeconfig string, port int) *config.Config {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "agent-token")
	must(t, os.WriteFile(tokenFile, []byte(agentToken+"\n"), 0o600))
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	must(t, err)
	var users strings.Builder
	for _, u := range []struct{ name, agent string }{{"alice", "dev"}, {"bob", "dev"}, {"carol", "own"}, {"dave", "own"}} {
		fmt.Fprintf(&users, "  - {name: %s, password_hash: %q, mounts: [{path: /, agent: %s}]}\n", u.name, h, u.agent)
	}
	doc := fmt.Sprintf(`
listen: {ftp: "127.0.0.1:0", sftp: "127.0.0.1:0", admin: ""}
ftp: {passive_ports: ""}
sftp: {host_keys: [%q]}
defender: {enabled: false}
agents:
  dev:
    kubernetes: {namespace: dev, selector: "upgate.dev/user={user}", port: %d, kubeconfig: %q}
    token_file: %q
  own:
    kubernetes: {namespace: "dev-{user}", port: %d, kubeconfig: %q}
    token_file: %q
users:
%s`, filepath.Join(dir, "ssh_host_ed25519_key"), port, kubeconfig, tokenFile, port, kubeconfig, tokenFile, users.String())
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return cfg
}

// freeLoopbackPort returns a port free on 127.0.0.21 just now: every agent
// listens on it, each on its own pod IP.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.21:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKubernetesDiscovery runs the gateway with agents found through a real
// API server, logging in with a ServiceAccount token that deploy/'s RBAC
// allows to read pods in the namespace dev and nothing else.
func TestKubernetesDiscovery(t *testing.T) {
	c := newCluster(t)
	c.apply(t, "namespace.yaml", "serviceaccount.yaml", "dev-pod/namespace.yaml", "dev-pod/rbac.yaml")
	saToken := c.token(t, "upgate", "upgate")
	prx := startProxy(t, strings.TrimPrefix(c.srv.URL, "https://"))
	kubeconfig, err := c.srv.Kubeconfig(t.TempDir(), "https://"+prx.addr, saToken)
	must(t, err)
	port := freeLoopbackPort(t)
	user := func(name string) map[string]string { return map[string]string{"upgate.dev/user": name, "app": "php"} }
	alice := c.runPod(t, "dev", "alice-php-1", "127.0.0.21", port, user("alice"))
	bob := c.runPod(t, "dev", "bob-php-1", "127.0.0.22", port, user("bob"))
	e := &env{c: c, srv: gwtest.Run(t, gatewayConfig(t, kubeconfig, port)), proxy: prx, port: port}

	t.Run("LoginsLandInTheirPods", func(t *testing.T) {
		fc, err := e.ftp(t, "alice")
		must(t, err)
		must(t, fc.Stor("hello.php", strings.NewReader("<?php echo 'alice';")))
		sc, _, err := e.sftp(t, "bob")
		must(t, err)
		must(t, sftpPut(sc, "hello.php", "<?php echo 'bob';"))
		must(t, fileHolds(alice.agent.Dir, "hello.php", "<?php echo 'alice';"))
		must(t, fileHolds(bob.agent.Dir, "hello.php", "<?php echo 'bob';"))
	})

	t.Run("LeastPrivilege", func(t *testing.T) {
		core := newAPI(t, c.srv, saToken).core
		ctx := context.Background()
		list := func(ns, resource string) error {
			return core.Get().Namespace(ns).Resource(resource).Do(ctx).Into(&corev1.PodList{})
		}
		if err := list("dev", "pods"); err != nil {
			t.Errorf("the gateway's token cannot list pods in dev: %v", err)
		}
		for what, err := range map[string]error{
			"list secrets in dev": core.Get().Namespace("dev").Resource("secrets").Do(ctx).Error(),
			"list pods in upgate": list("upgate", "pods"),
			"create a pod in dev": core.Post().Namespace("dev").Resource("pods").Body(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}).Do(ctx).Error(),
			"delete alice's pod": core.Delete().Namespace("dev").Resource("pods").Name(alice.name).
				Body(&metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}).Do(ctx).Error(),
			"exec in alice's pod": core.Post().Namespace("dev").Resource("pods").Name(alice.name).SubResource("exec").Param("command", "true").Do(ctx).Error(),
			"update a pod's status": core.Put().Namespace("dev").Resource("pods").Name(alice.name).SubResource("status").
				Body(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: alice.name}}).Do(ctx).Error(),
		} {
			if !forbidden(err) {
				t.Errorf("%s: %v, want forbidden", what, err)
			}
		}
	})

	t.Run("RefusedTokenAtStart", func(t *testing.T) {
		bad, err := c.srv.Kubeconfig(t.TempDir(), "", "not-a-token")
		must(t, err)
		srv, err := server.Start(context.Background(), gatewayConfig(t, bad, port), server.Options{Logger: discard()})
		if err == nil {
			srv.Shutdown(context.Background())
			t.Fatal("the gateway started with a token the API server refuses")
		}
		if want := "agents.dev.kubernetes: podagents: kubernetes API at " + c.srv.URL + " refused the credentials"; !strings.Contains(err.Error(), want) {
			t.Errorf("start: %v\nwant it to contain %q", err, want)
		}
	})

	t.Run("AgentNotReadyRefusesLogins", func(t *testing.T) {
		idle, _, err := e.sftp(t, "alice")
		must(t, err)
		c.setReady(t, alice, false)
		const reason = "no ready dev pod for alice in dev matching upgate.dev/user=alice: alice-php-1 (container upgate-agent not ready)"
		waitFor(t, 15*time.Second, "the gateway sees alice's agent not ready", func() error {
			if _, err := idle.Stat("/"); err == nil || !strings.Contains(err.Error(), reason) {
				return fmt.Errorf("stat: %v", err)
			}
			return nil
		})
		_, err = e.ftp(t, "alice")
		if err == nil || !strings.HasPrefix(err.Error(), "421 ") || !strings.Contains(err.Error(), reason) {
			t.Errorf("FTP login: %v\nwant 421 and %q", err, reason)
		}
		_, banner, err := e.sftp(t, "alice")
		if err == nil || !strings.Contains(banner, "upgate: ") || !strings.Contains(banner, reason) {
			t.Errorf("SFTP login: %v, banner %q\nwant a refusal with %q", err, banner, reason)
		}
		c.setReady(t, alice, true)
		waitFor(t, 15*time.Second, "alice's agent ready again", func() error {
			_, err := idle.Stat("/")
			return err
		})
		if _, err := e.ftp(t, "alice"); err != nil {
			t.Errorf("FTP login once ready again: %v", err)
		}
	})

	t.Run("NewestReadyPodWins", func(t *testing.T) {
		sc, _, err := e.sftp(t, "bob")
		must(t, err)
		bob2 := c.runPod(t, "dev", "bob-php-2", "127.0.0.24", port, user("bob"))
		waitFor(t, 15*time.Second, "bob's uploads go to his newest pod", func() error {
			if err := sftpPut(sc, "probe.txt", "2"); err != nil {
				return err
			}
			return fileHolds(bob2.agent.Dir, "probe.txt", "2")
		})
		c.deletePod(t, bob2)
		waitFor(t, 15*time.Second, "bob's uploads back on his first pod", func() error {
			if err := sftpPut(sc, "probe.txt", "1"); err != nil {
				return err
			}
			return fileHolds(bob.agent.Dir, "probe.txt", "1")
		})
	})

	t.Run("ReplacedPodTakesOver", func(t *testing.T) {
		replacePod(t, e, alice, user("alice"))
	})

	t.Run("NamespacePerUser", func(t *testing.T) {
		// The Role's rules as a ClusterRole, bound in carol's namespace
		// only; dave's namespace grants nothing.
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "dev-pod", "rbac.yaml"))
		must(t, err)
		var role rbacv1.Role
		must(t, yamlFirst(b, &role))
		must(t, c.create(c.rbac, "", "clusterroles", &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "upgate-pod-reader"}, Rules: role.Rules}, nil))
		c.namespace(t, "dev-carol")
		c.namespace(t, "dev-dave")
		must(t, c.create(c.rbac, "dev-carol", "rolebindings", &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "upgate-pod-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "upgate-pod-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "upgate", Namespace: "upgate"}},
		}, nil))
		carol := c.runPod(t, "dev-carol", "workspace", "127.0.0.25", port, nil)
		fc, err := e.ftp(t, "carol")
		must(t, err)
		must(t, fc.Stor("index.php", strings.NewReader("carol")))
		must(t, fileHolds(carol.agent.Dir, "index.php", "carol"))

		_, err = e.ftp(t, "dave")
		if err == nil || !strings.HasPrefix(err.Error(), "421 ") || !strings.Contains(err.Error(), "cannot list resource") || !strings.Contains(err.Error(), "dev-dave") {
			t.Errorf("dave's login without a RoleBinding in dev-dave: %v", err)
		}
	})

	t.Run("SwitchOverTime", func(t *testing.T) {
		sc, _, err := e.sftp(t, "bob")
		must(t, err)
		var times []time.Duration
		var prev *devPod
		for i := range 5 {
			ip := fmt.Sprintf("127.0.0.%d", 30+i)
			marker := fmt.Sprintf("marker-%d", i)
			p := &devPod{name: fmt.Sprintf("bob-php-s%d", i), namespace: "dev", ip: ip, agent: startAgent(t, ip, port)}
			must(t, os.WriteFile(filepath.Join(p.agent.Dir, marker), nil, 0o644))
			c.createPod(t, p, user("bob"))
			c.setReady(t, p, true)
			times = append(times, switchOver(t, sc, marker))
			if prev != nil {
				c.deletePod(t, prev)
			}
			prev = p
		}
		c.deletePod(t, prev)
		waitFor(t, 15*time.Second, "bob back on his first pod", func() error {
			_, err := sc.Stat("hello.php")
			return err
		})
		slices.Sort(times)
		t.Logf("switch-over after a replacement turned ready, 5 runs: min %v, median %v, max %v", times[0], times[2], times[4])
	})

	t.Run("Reload", func(t *testing.T) {
		before, _, err := e.sftp(t, "bob")
		must(t, err)
		// A narrower selector: a new resolver for new logins; the live
		// session keeps its connection.
		cfg := gatewayConfig(t, kubeconfig, port)
		a := cfg.Agents["dev"]
		a.Kubernetes.Selector = "upgate.dev/user={user},app=php"
		cfg.Agents["dev"] = a
		must(t, e.srv.Gateway.Reload(cfg))
		must(t, sftpPut(before, "before-reload.txt", "old session"))
		after, _, err := e.sftp(t, "bob")
		must(t, err)
		must(t, sftpPut(after, "after-reload.txt", "new session"))
		must(t, fileHolds(bob.agent.Dir, "before-reload.txt", "old session"))
		must(t, fileHolds(bob.agent.Dir, "after-reload.txt", "new session"))
		// A selector no pod matches refuses new logins with it.
		cfg = gatewayConfig(t, kubeconfig, port) // the gateway keeps the last one
		a = cfg.Agents["dev"]
		a.Kubernetes.Selector = "upgate.dev/user={user},app=node"
		cfg.Agents["dev"] = a
		must(t, e.srv.Gateway.Reload(cfg))
		if _, err := e.ftp(t, "bob"); err == nil || !strings.Contains(err.Error(), "no ready dev pod for bob in dev matching app=node,upgate.dev/user=bob") {
			t.Errorf("login after a reload to an unmatched selector: %v", err)
		}
		must(t, e.srv.Gateway.Reload(gatewayConfig(t, kubeconfig, port)))
	})

	// Last: the reflectors back off while the API server is away.
	t.Run("APIServerLostKeepsServing", func(t *testing.T) {
		prx.cut()
		fc, err := e.ftp(t, "bob")
		must(t, err)
		must(t, fc.Stor("offline.txt", strings.NewReader("while the API server is away")))
		must(t, fileHolds(bob.agent.Dir, "offline.txt", "while the API server is away"))
		// What the gateway cannot see meanwhile: bob's agent turns not
		// ready. It keeps serving the last known pod.
		c.setReady(t, bob, false)
		time.Sleep(500 * time.Millisecond)
		sc, _, err := e.sftp(t, "bob")
		if err != nil {
			t.Fatalf("SFTP login while the API server is away: %v", err)
		}
		must(t, sftpPut(sc, "offline2.txt", "still"))
		must(t, fileHolds(bob.agent.Dir, "offline2.txt", "still"))

		prx.restore(t)
		waitFor(t, 90*time.Second, "the gateway catches up once the API server is back", func() error {
			if _, err := sc.Stat("/"); err == nil || !strings.Contains(err.Error(), "no ready dev pod for bob") {
				return fmt.Errorf("stat: %v", err)
			}
			return nil
		})
		c.setReady(t, bob, true)
		waitFor(t, 15*time.Second, "bob's pod ready again", func() error {
			_, err := sc.Stat("/")
			return err
		})
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// switchOver returns how long after now the session first sees marker,
// a file only the new pod's agent holds (polled every 2 ms, for at most
// 15 s).
func switchOver(t *testing.T, sc *sftp.Client, marker string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if _, err := sc.Stat(marker); err == nil {
			return time.Since(start).Round(time.Millisecond)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the session did not reach the new pod within 15 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// replacePod replaces old with a pod on a new IP, as a rollout does, while
// alice has idle FTP and SFTP sessions and an upload in flight on each,
// and checks that: new operations of the idle sessions reach the new pod
// within seconds of it turning ready, without a new login; the uploads in
// flight fail and leave nothing on either pod; the old pod's deletion
// changes nothing more.
func replacePod(t *testing.T, e *env, old *devPod, labels map[string]string) {
	c := e.c
	idleFTP, err := e.ftp(t, "alice")
	must(t, err)
	sc, _, err := e.sftp(t, "alice")
	must(t, err)

	// An SFTP upload in flight: open, 2 MiB sent (the gateway sends
	// 1 MiB messages), not closed.
	inflight, err := sc.Create("inflight.php")
	must(t, err)
	_, err = inflight.Write(bytes.Repeat([]byte("x"), 2<<20))
	must(t, err)
	// An FTP upload in flight: STOR fed by a pipe.
	upFTP, err := e.ftp(t, "alice")
	must(t, err)
	pr, pw := io.Pipe()
	storDone := make(chan error, 1)
	go func() {
		err := upFTP.Stor("inflight-ftp.php", pr)
		pr.CloseWithError(errors.New("test: STOR returned")) // unblocks the writer
		storDone <- err
	}()
	_, err = pw.Write(bytes.Repeat([]byte("y"), 2<<20))
	must(t, err)
	waitFor(t, 10*time.Second, "both uploads open on the old pod", func() error {
		if n := len(agenttest.TempFiles(t, old.agent.Dir)); n != 2 {
			return fmt.Errorf("%d temp files", n)
		}
		return nil
	})

	// The replacement: a new pod on another IP, whose agent already has
	// a marker file, turns ready.
	next := &devPod{name: "alice-php-2", namespace: old.namespace, ip: "127.0.0.23", agent: startAgent(t, "127.0.0.23", e.port)}
	must(t, os.WriteFile(filepath.Join(next.agent.Dir, "new-pod"), []byte("2"), 0o644))
	c.createPod(t, next, labels)
	c.setReady(t, next, true)
	t.Logf("switch-over: the idle SFTP session reached the new pod %v after its agent turned ready", switchOver(t, sc, "new-pod"))

	// The uploads in flight on the old pod failed.
	_, werr := inflight.Write([]byte("more"))
	cerr := inflight.Close()
	if werr == nil && cerr == nil {
		t.Error("the SFTP upload in flight survived the replacement of its pod")
	}
	// The STOR's data connection fails: keep writing until it does.
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	deadline := time.Now().Add(15 * time.Second)
	var storErr error
writing:
	for time.Now().Before(deadline) {
		select {
		case storErr = <-storDone:
			break writing
		default:
		}
		if _, err := pw.Write(chunk); err != nil {
			break
		}
	}
	pw.CloseWithError(errors.New("test: done"))
	if storErr == nil {
		select {
		case storErr = <-storDone:
		case <-time.After(15 * time.Second):
			t.Fatal("the FTP upload in flight did not end")
		}
	}
	if storErr == nil || !strings.Contains(storErr.Error(), "451") || !strings.Contains(storErr.Error(), "the agent moved from "+old.ip) {
		t.Errorf("FTP upload in flight: %v, want a 451 saying the agent moved", storErr)
	}
	// Nothing of them anywhere.
	old.agent.WaitIdle(t, 10*time.Second)
	for _, p := range []*devPod{old, next} {
		if tmp := agenttest.TempFiles(t, p.agent.Dir); len(tmp) > 0 {
			t.Errorf("%s keeps temp files %v", p.name, tmp)
		}
		absent(t, p.agent.Dir, "inflight.php")
		absent(t, p.agent.Dir, "inflight-ftp.php")
	}

	// The rollout deletes the old pod; the idle sessions, never logged in
	// again, write to the new one.
	c.deletePod(t, old)
	must(t, idleFTP.Stor("after.php", strings.NewReader("via the idle FTP session")))
	must(t, sftpPut(sc, "inflight.php", "saved again"))
	must(t, fileHolds(next.agent.Dir, "after.php", "via the idle FTP session"))
	must(t, fileHolds(next.agent.Dir, "inflight.php", "saved again"))
	absent(t, old.agent.Dir, "after.php")
}

// TestUnreachableAPIServerAtStart: a gateway whose API server cannot be
// reached does not start, and says why. No API server is needed here.
func TestUnreachableAPIServerAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closed := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"+
		"clusters: [{name: c, cluster: {server: \"https://"+closed+"\", insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600))
	cfg := gatewayConfig(t, kubeconfig, 7070)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := server.Start(ctx, cfg, server.Options{Logger: discard()})
	if err == nil {
		srv.Shutdown(ctx)
		t.Fatal("the gateway started without its API server")
	}
	if want := "agents.dev.kubernetes: podagents: kubernetes API at https://" + closed + " unreachable: "; !strings.Contains(err.Error(), want) {
		t.Errorf("start: %v\nwant it to contain %q", err, want)
	}
}
