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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/kubetest"
)

// cluster is a test API server with an admin client for it.
type cluster struct {
	srv *kubetest.Server
	api
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	srv := kubetest.Start(t)
	return &cluster{srv: srv, api: newAPI(t, srv, srv.AdminToken)}
}

// api reaches the core/v1 and rbac.authorization.k8s.io/v1 APIs: plain
// RESTClients with a scheme of those groups (the typed clientset's scheme
// would compile every API group into the test).
type api struct {
	core, rbac *rest.RESTClient
}

// on returns a request for a resource of the client's group, in ns
// unless it is empty.
func on(r *rest.Request, ns, resource string) *rest.Request {
	if ns != "" {
		r = r.Namespace(ns)
	}
	return r.Resource(resource)
}

// create creates obj; out, if non-nil, receives the answer.
func (a api) create(client *rest.RESTClient, ns, resource string, obj, out runtime.Object) error {
	r := on(client.Post(), ns, resource).Body(obj).Do(context.Background())
	if out == nil {
		return r.Error()
	}
	return r.Into(out)
}

// newAPI returns clients authenticated with token, whose connections are
// closed in t.Cleanup.
func newAPI(t *testing.T, srv *kubetest.Server, token string) api {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, rbacv1.AddToScheme, authnv1.AddToScheme} {
		must(t, add(scheme))
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
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
	client := func(apiPath string, gv schema.GroupVersion) *rest.RESTClient {
		c := rest.CopyConfig(rc)
		c.APIPath, c.GroupVersion, c.NegotiatedSerializer = apiPath, &gv, codecs
		rc, err := rest.RESTClientForConfigAndClient(c, hc)
		must(t, err)
		return rc
	}
	return api{core: client("/api", corev1.SchemeGroupVersion), rbac: client("/apis", rbacv1.SchemeGroupVersion)}
}

// namespace creates a namespace and its "default" ServiceAccount (no
// controller manager creates it here, and pods need it).
func (c *cluster) namespace(t *testing.T, name string) {
	t.Helper()
	must(t, c.create(c.core, "", "namespaces", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, nil))
	c.defaultSA(t, name)
}

func (c *cluster) defaultSA(t *testing.T, ns string) {
	t.Helper()
	must(t, c.create(c.core, ns, "serviceaccounts", &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, nil))
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// apply creates the objects of manifest files of deploy/: the gateway's
// own Namespace, ServiceAccount, Role and RoleBinding, as shipped.
func (c *cluster) apply(t *testing.T, files ...string) {
	t.Helper()
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
				err = c.create(c.core, "", "namespaces", &o, nil)
				if err == nil {
					c.defaultSA(t, o.Name)
				}
			case "ServiceAccount":
				var o corev1.ServiceAccount
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				err = c.create(c.core, o.Namespace, "serviceaccounts", &o, nil)
			case "Role":
				var o rbacv1.Role
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				err = c.create(c.rbac, o.Namespace, "roles", &o, nil)
			case "RoleBinding":
				var o rbacv1.RoleBinding
				must(t, yaml.UnmarshalStrict([]byte(doc), &o))
				err = c.create(c.rbac, o.Namespace, "rolebindings", &o, nil)
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
	tr := &authnv1.TokenRequest{}
	err := c.core.Post().Namespace(ns).Resource("serviceaccounts").Name(name).SubResource("token").
		Body(&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}).Do(context.Background()).Into(tr)
	must(t, err)
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
	c.createPod(t, p, labels)
	c.setReady(t, p, true)
	return p
}

// createPod creates p's pod object: php-fpm and the agent, on a node
// that does not exist (no kubelet here).
func (c *cluster) createPod(t *testing.T, p *devPod, labels map[string]string) {
	t.Helper()
	must(t, c.create(c.core, p.namespace, "pods", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{
			{Name: "php-fpm", Image: "php:8.3-fpm"},
			{Name: "upgate-agent", Image: "upgate"},
		}},
	}, nil))
}

// setReady writes the pod's status: running on its IP, php-fpm not ready
// (its readiness must not matter), the agent container ready or not.
func (c *cluster) setReady(t *testing.T, p *devPod, ready bool) {
	t.Helper()
	ctx := context.Background()
	// A conflict (the resource version moved) is retried.
	for attempt := 0; ; attempt++ {
		pod := &corev1.Pod{}
		must(t, c.core.Get().Namespace(p.namespace).Resource("pods").Name(p.name).Do(ctx).Into(pod))
		pod.Status = corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  p.ip,
			PodIPs: []corev1.PodIP{{IP: p.ip}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "php-fpm", Image: "php:8.3-fpm", Ready: false},
				{Name: "upgate-agent", Image: "upgate", Ready: ready},
			},
		}
		err := c.core.Put().Namespace(p.namespace).Resource("pods").Name(p.name).SubResource("status").Body(pod).Do(ctx).Error()
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
	must(t, c.core.Delete().Namespace(p.namespace).Resource("pods").Name(p.name).
		Body(&metav1.DeleteOptions{GracePeriodSeconds: &zero}).Do(context.Background()).Error())
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
