package podagents

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// restConfig loads the client configuration: the kubeconfig file's current
// context, or the in-cluster configuration when kubeconfig is empty.
func restConfig(kubeconfig string) (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("podagents: in-cluster configuration (set a kubeconfig outside a pod): %w", err)
		}
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("podagents: kubeconfig %s: %w", kubeconfig, err)
		}
	}
	// Client certificate files would make client-go start a goroutine
	// that reloads them and is never stopped: read them once instead.
	if rc.CertFile != "" || rc.KeyFile != "" {
		if rc.CertData, err = os.ReadFile(rc.CertFile); err != nil {
			return nil, fmt.Errorf("podagents: client certificate: %w", err)
		}
		if rc.KeyData, err = os.ReadFile(rc.KeyFile); err != nil {
			return nil, fmt.Errorf("podagents: client key: %w", err)
		}
		rc.CertFile, rc.KeyFile = "", ""
	}
	rc.UserAgent = "upgate"
	return rc, nil
}

// newClient returns a REST client for the core/v1 API whose connections
// conns tracks. The dialer and proxy make the transport private to this
// client (client-go caches transports process-wide otherwise), so that
// closing its connections ends its goroutines.
//
// It is a plain RESTClient with a scheme that knows core/v1 only: the
// typed clientset's scheme registers every API group, which costs the
// build about twice the packages for nothing used here.
func newClient(rc *rest.Config, conns *connTracker) (*rest.RESTClient, error) {
	rc = rest.CopyConfig(rc)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	rc.GroupVersion = &corev1.SchemeGroupVersion
	rc.APIPath = "/api"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return conns.add(c), nil
	}
	rc.Proxy = http.ProxyFromEnvironment
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	conns.client = hc
	client, err := rest.RESTClientForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	return client, nil
}

// connTracker remembers the open connections to the API server.
type connTracker struct {
	client *http.Client
	// mu guards conns.
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[*trackedConn]struct{})}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

func (t *connTracker) add(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

// closeAll closes the idle connections and then every other one.
func (t *connTracker) closeAll() {
	if t.client != nil {
		t.client.CloseIdleConnections()
	}
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
