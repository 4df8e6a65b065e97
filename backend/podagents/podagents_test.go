package podagents

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The API-server side of the Resolver (informers, RBAC, a lost server) is
// tested against a real kube-apiserver in interop/kube.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog's flush daemon, started by its init.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// pod builds a pod as the informer cache holds it.
func pod(name string, created int, mods ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dev", CreationTimestamp: metav1.NewTime(time.Unix(int64(created), 0))},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			ContainerStatuses: []corev1.ContainerStatus{{Name: "php", Ready: false}, {Name: DefaultContainer, Ready: true}}},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func TestChoose(t *testing.T) {
	now := metav1.Now()
	pending := func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }
	unphased := func(p *corev1.Pod) { p.Status.Phase = "" }
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &now }
	noIP := func(p *corev1.Pod) { p.Status.PodIP = "" }
	agentDown := func(p *corev1.Pod) { p.Status.ContainerStatuses[1].Ready = false }
	noAgent := func(p *corev1.Pod) { p.Status.ContainerStatuses = p.Status.ContainerStatuses[:1] }
	tests := []struct {
		name       string
		pods       []*corev1.Pod
		want       string
		usable     int
		whyNotWant []string
	}{
		{"none", nil, "", 0, nil},
		// php-fpm's readiness does not matter: only the agent's.
		{"one ready, app not ready", []*corev1.Pod{pod("a", 1)}, "a", 1, nil},
		{"pending", []*corev1.Pod{pod("a", 1, pending)}, "", 0, []string{"a (pending)"}},
		{"no phase", []*corev1.Pod{pod("a", 1, unphased)}, "", 0, []string{"a (not running)"}},
		{"terminating", []*corev1.Pod{pod("a", 1, deleting)}, "", 0, []string{"a (terminating)"}},
		{"no IP", []*corev1.Pod{pod("a", 1, noIP)}, "", 0, []string{"a (no IP)"}},
		{"agent not ready", []*corev1.Pod{pod("a", 1, agentDown)}, "", 0, []string{"a (container upgate-agent not ready)"}},
		{"no agent container", []*corev1.Pod{pod("a", 1, noAgent)}, "", 0, []string{"a (no container upgate-agent)"}},
		{"reasons sorted", []*corev1.Pod{pod("b", 1, pending), pod("a", 2, agentDown)}, "", 0, []string{"a (container upgate-agent not ready)", "b (pending)"}},
		{"newest of several", []*corev1.Pod{pod("old", 1), pod("new", 3), pod("mid", 2)}, "new", 3, nil},
		{"newest ready", []*corev1.Pod{pod("old", 1), pod("new", 3, agentDown)}, "old", 1, nil},
		{"replacement while the old one terminates", []*corev1.Pod{pod("old", 1, deleting), pod("new", 2)}, "new", 1, nil},
		{"same age: greatest name", []*corev1.Pod{pod("a", 1), pod("c", 1), pod("b", 1)}, "c", 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, usable, why := Choose(tt.pods, DefaultContainer)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want || usable != tt.usable || strings.Join(why, "|") != strings.Join(tt.whyNotWant, "|") {
				t.Errorf("Choose = %q, %d, %q; want %q, %d, %q", name, usable, why, tt.want, tt.usable, tt.whyNotWant)
			}
		})
	}
}

func TestNoReadyPodError(t *testing.T) {
	var err error = &NoReadyPodError{User: "alice", Namespace: "dev-alice", Selector: "app=php,upgate.dev/user=alice",
		NotReady: []string{"alice-php-1 (container upgate-agent not ready)"}}
	if want := "no ready dev pod for alice in dev-alice matching app=php,upgate.dev/user=alice: alice-php-1 (container upgate-agent not ready)"; err.Error() != want {
		t.Errorf("text %q, want %q", err, want)
	}
	if !errors.Is(err, ErrNoReadyPod) {
		t.Error("does not wrap ErrNoReadyPod")
	}
	err = &NoReadyPodError{User: "bob", Namespace: "dev-bob"}
	if want := "no ready dev pod for bob in dev-bob matching any labels"; err.Error() != want {
		t.Errorf("text %q, want %q", err, want)
	}
}

func TestWatchSelector(t *testing.T) {
	tests := []struct{ template, want string }{
		{"", ""},
		{"upgate.dev/user={user}", "upgate.dev/user"},
		{"upgate.dev/user={user},app=php", "app=php,upgate.dev/user"},
		{"upgate.dev/user in (x,{user})", "upgate.dev/user"},
		{"app=php,owner!={user}", "app=php"},
		{"user-{user}=yes", ""},
		{"tier in (web,dev),!canary", "!canary,tier in (dev,web)"},
	}
	for _, tt := range tests {
		st, err := parseSelectorTemplate(tt.template)
		if err != nil {
			t.Errorf("%q: %v", tt.template, err)
			continue
		}
		if got := st.watchSelector(); got != tt.want {
			t.Errorf("watchSelector(%q) = %q, want %q", tt.template, got, tt.want)
		}
	}
	st, _ := parseSelectorTemplate("upgate.dev/user={user},app=php")
	sel, err := st.expand("alice")
	if err != nil || sel.String() != "app=php,upgate.dev/user=alice" {
		t.Errorf("expand(alice) = %v, %v", sel, err)
	}
	if _, err := st.expand("-alice"); err == nil || !strings.Contains(err.Error(), `podagents: selector "upgate.dev/user={user},app=php" for user "-alice"`) {
		t.Errorf("expand(-alice): %v", err)
	}
}

func TestExpandNamespace(t *testing.T) {
	tests := []struct{ template, user, want, err string }{
		{"dev", "Alice", "dev", ""},
		{"dev-{user}", "alice", "dev-alice", ""},
		{"dev-{user}", "Alice", "", `podagents: namespace "dev-{user}" for user "Alice": "dev-Alice" is not a namespace name`},
		{"Dev", "alice", "", `podagents: namespace "Dev" is not a namespace name`},
	}
	for _, tt := range tests {
		got, err := expandNamespace(tt.template, tt.user)
		if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("expandNamespace(%q, %q) = %q, %v; want %q, %q", tt.template, tt.user, got, err, tt.want, tt.err)
		}
	}
}

// TestNewErrors: what New refuses, each with a message that says why; an
// API server that cannot be reached among them.
func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	// A loopback port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	doc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://" + closed + "\", insecure-skip-tls-verify: true}}]\n" +
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
	if err := os.WriteFile(kubeconfig, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	base := Config{Namespace: "dev", Selector: "upgate.dev/user={user}", Port: 7070, Kubeconfig: kubeconfig, SyncTimeout: 10 * time.Second}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no port", func(c *Config) { c.Port = 0 }, "podagents: port 0 is not 1-65535"},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "podagents: no namespace"},
		{"bad namespace", func(c *Config) { c.Namespace = "dev_{user}" }, `podagents: namespace "dev_{user}" for user "user"`},
		{"bad selector", func(c *Config) { c.Selector = "a in (" }, `podagents: selector "a in ("`},
		{"no kubeconfig file", func(c *Config) { c.Kubeconfig = filepath.Join(dir, "none") }, "podagents: kubeconfig " + filepath.Join(dir, "none")},
		{"not in a cluster", func(c *Config) { c.Kubeconfig = "" }, "podagents: in-cluster configuration (set a kubeconfig outside a pod)"},
		{"API server unreachable", nil, "podagents: kubernetes API at https://" + closed + " unreachable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := New(ctx, cfg)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}
