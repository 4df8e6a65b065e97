package kube_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/kubetest"
)

// cluster is a test API server with clients for it.
type cluster struct {
	srv  *kubetest.Server
	core *corev1client.CoreV1Client // as admin
	rbac *rbacv1client.RbacV1Client // as admin
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	srv := kubetest.Start(t)
	core, rbac := clients(t, srv, srv.AdminToken)
	return &cluster{srv: srv, core: core, rbac: rbac}
}

// clients returns API clients authenticated with token, whose connections
// are closed in t.Cleanup (client-go would otherwise keep them in its
// process-wide transport cache).
func clients(t *testing.T, srv *kubetest.Server, token string) (*corev1client.CoreV1Client, *rbacv1client.RbacV1Client) {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	d := &net.Dialer{Timeout: 10 * time.Second}
	rc := &rest.Config{
		Host:            srv.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: srv.CA, ServerName: "127.0.0.1"},
		Proxy:           http.ProxyFromEnvironment, // a transport of its own
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			return c, err
		},
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	core, err := corev1client.NewForConfigAndClient(rc, hc)
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := rbacv1client.NewForConfigAndClient(rc, hc)
	if err != nil {
		t.Fatal(err)
	}
	return core, rbac
}

// namespace creates a namespace and its "default" ServiceAccount (no
// controller manager creates it here, and pods need it).
func (c *cluster) namespace(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.defaultSA(t, name)
}

func (c *cluster) defaultSA(t *testing.T, ns string) {
	t.Helper()
	if _, err := c.core.ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// apply creates the objects of manifest files of deploy/: the gateway's
// own Namespace, ServiceAccount, Role and RoleBinding, as shipped.
func (c *cluster) apply(t *testing.T, files ...string) {
	t.Helper()
	ctx := context.Background()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docSeparator.Split(string(b), -1) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var err error
			switch tm.Kind {
			case "":
				continue
			case "Namespace":
				var o corev1.Namespace
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				_, err = c.core.Namespaces().Create(ctx, &o, metav1.CreateOptions{})
				if err == nil {
					c.defaultSA(t, o.Name)
				}
			case "ServiceAccount":
				var o corev1.ServiceAccount
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				_, err = c.core.ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
			case "Role":
				var o rbacv1.Role
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				_, err = c.rbac.Roles(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
			case "RoleBinding":
				var o rbacv1.RoleBinding
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				_, err = c.rbac.RoleBindings(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})
			default:
				t.Fatalf("%s: kind %s: not applied by this test", f, tm.Kind)
			}
			if err != nil {
				t.Fatalf("%s: %s: %v", f, tm.Kind, err)
			}
		}
	}
}

// yamlFirst decodes the first document of a manifest file strictly.
func yamlFirst(b []byte, into any) error {
	return yaml.UnmarshalStrict([]byte(docSeparator.Split(string(b), -1)[0]), into)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// token asks the API server for a token of the ServiceAccount ns/name
// (TokenRequest), as the kubelet projects it into a pod.
func (c *cluster) token(t *testing.T, ns, name string) string {
	t.Helper()
	exp := int64(3600)
	tr, err := c.core.ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// devPod is a developer's pod: an API object whose status the test
// writes, and a real agent listening on its pod IP.
type devPod struct {
	name, namespace, ip string
	agent               *agenttest.Agent
}

// agentToken is the token every test agent wants and the gateway sends.
const agentToken = "kube-test-agent-token"

// startAgent serves a fresh directory on ip:port.
func startAgent(t *testing.T, ip string, port int) *agenttest.Agent {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	return agenttest.Serve(t, "", lis, agentToken)
}

// runPod starts the agent on ip:port, creates the pod with labels and
// marks it running with a ready agent container.
func (c *cluster) runPod(t *testing.T, ns, name, ip string, port int, labels map[string]string) *devPod {
	t.Helper()
	p := &devPod{name: name, namespace: ns, ip: ip, agent: startAgent(t, ip, port)}
	ctx := context.Background()
	_, err := c.core.Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
			{Name: "php-fpm", Image: "php:8.3-fpm"},
			{Name: "upgate-agent", Image: "upgate"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.setReady(t, p, true)
	return p
}

// setReady writes the pod's status: running on its IP, php-fpm not ready
// (its readiness must not matter), the agent container ready or not.
func (c *cluster) setReady(t *testing.T, p *devPod, ready bool) {
	t.Helper()
	ctx := context.Background()
	// A conflict (the resource version moved) is retried.
	for attempt := 0; ; attempt++ {
		pod, err := c.core.Pods(p.namespace).Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  p.ip,
			PodIPs: []corev1.PodIP{{IP: p.ip}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "php-fpm", Image: "php:8.3-fpm", Ready: false},
				{Name: "upgate-agent", Image: "upgate", Ready: ready},
			},
		}
		_, err = c.core.Pods(p.namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if attempt >= 5 {
			t.Fatal(err)
		}
	}
}

func (c *cluster) deletePod(t *testing.T, p *devPod) {
	t.Helper()
	zero := int64(0)
	if err := c.core.Pods(p.namespace).Delete(context.Background(), p.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

// proxy forwards TCP connections to the API server; cut and restore play
// an API server that goes away and comes back, as the gateway sees it.
type proxy struct {
	addr, target string

	mu    sync.Mutex
	lis   net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: make(map[net.Conn]struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
}

// cut closes the listener and every connection: the API server is gone.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *proxy) restore(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(lis)
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fileHolds checks a file's bytes on an agent's disk.
func fileHolds(dir, name, want string) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", name, b, want)
	}
	return nil
}

func absent(t *testing.T, dir, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s/%s: %v, want it absent", dir, name, err)
	}
}

func forbidden(err error) bool {
	return err != nil && strings.Contains(err.Error(), "forbidden")
}
