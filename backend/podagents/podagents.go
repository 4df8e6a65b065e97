// Package podagents finds each user's agent in a Kubernetes pod through
// the API server: a [Resolver] watches Pods with client-go informers and
// answers, for a login name, the address of the agent in that user's
// ready pod.
//
// An agent entry names a namespace (or a template such as "dev-{user}"), a
// label selector template ("upgate.dev/user={user},app=php"), the agent
// container's name and its port. For user alice the Resolver looks at the
// pods of alice's namespace that match alice's selector, keeps those whose
// agent container is ready, and picks one by [Choose]'s rule.
//
// Readiness is the agent container's, not the pod's: a developer whose
// app fails its readiness probe (broken code just uploaded) must still be
// able to upload the fix.
//
// The informers keep their cache when the API server goes away: Resolve
// goes on answering from the last known pods, and the informers catch up
// when it is back. An API server that cannot be reached when the Resolver
// starts is an error from [New].
//
// Invariant: Resolve never waits for the API server once a namespace is
// known; it reads the informer's cache. Only the first Resolve of a
// namespace template's namespace waits for that namespace's first list,
// bounded by its context and Config.SyncTimeout.
package podagents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// DefaultContainer is the agent container's name when Config.Container is
// empty: the name "upgate inject" gives the sidecar.
const DefaultContainer = "upgate-agent"

// Config configures a Resolver. Namespace, Selector and Port are required.
type Config struct {
	// Namespace is where the user's pod runs: a namespace name ("dev") or
	// a template in which every "{user}" becomes the login name
	// ("dev-{user}"). A fixed namespace is watched from New on; each
	// namespace a template yields is watched from the first Resolve for
	// it on, and then for as long as the Resolver runs.
	Namespace string

	// Selector is a label selector in which every "{user}" becomes the
	// login name: "upgate.dev/user={user},app=php". Empty matches every
	// pod of the namespace, which suits a namespace per user only.
	Selector string

	// Container is the name of the agent container, whose readiness
	// decides whether a pod can take uploads. Empty means
	// DefaultContainer.
	Container string

	// Port is the agent's port in the pod (its --listen port): 1-65535.
	Port int

	// Kubeconfig is a kubeconfig file to reach the API server with (its
	// current context). Empty means the in-cluster configuration: the
	// pod's service account token and the KUBERNETES_SERVICE_* variables.
	Kubeconfig string

	// SyncTimeout bounds the wait for a namespace's first list of pods:
	// in New for a fixed namespace, in the first Resolve for a templated
	// one. Zero means 30 s.
	SyncTimeout time.Duration

	// Logger receives the Resolver's logs (a pod chosen, API errors) and
	// client-go's. Nil means slog.Default().
	Logger *slog.Logger
}

// ErrNoReadyPod is wrapped by Resolve's error when no pod of the user has a
// ready agent container.
var ErrNoReadyPod = errors.New("no ready pod")

// NoReadyPodError is Resolve's error when no pod of the user has a ready
// agent container. Its text is meant for the user (an FTP reply, an SSH
// banner), so it carries no package prefix.
type NoReadyPodError struct {
	User, Namespace, Selector string
	// NotReady says why each matching pod was passed over, as
	// "alice-php-1 (container upgate-agent not ready)"; empty when no pod
	// matches.
	NotReady []string
}

func (e *NoReadyPodError) Error() string {
	msg := fmt.Sprintf("no ready dev pod for %s in %s matching %s", e.User, e.Namespace, orAll(e.Selector))
	if len(e.NotReady) > 0 {
		msg += ": " + strings.Join(e.NotReady, ", ")
	}
	return msg
}

// Unwrap returns ErrNoReadyPod.
func (e *NoReadyPodError) Unwrap() error { return ErrNoReadyPod }

func orAll(sel string) string {
	if sel == "" {
		return "any labels"
	}
	return sel
}

// Resolver finds users' agents in pods. It is safe for concurrent use.
// Close stops it.
type Resolver struct {
	cfg      Config
	log      *slog.Logger
	client   *rest.RESTClient // core/v1
	conns    *connTracker
	server   string // the API server's URL, for errors
	template *selectorTemplate
	watchSel string          // the informers' label selector
	ctx      context.Context // ends at Close; informers run under it
	cancel   context.CancelFunc
	wg       sync.WaitGroup // informer goroutines

	// mu guards namespaces, subs, chosen and closed.
	mu         sync.Mutex
	namespaces map[string]*namespaceWatch
	subs       map[*subscription]struct{}
	chosen     map[string]string // user -> "namespace/pod ip", last logged
	closed     bool
}

// namespaceWatch is one namespace's pod informer.
type namespaceWatch struct {
	name     string
	informer cache.SharedIndexInformer
	stop     context.CancelFunc // stops the informer
	// mu guards lastErr: the informer's last list or watch error, nil
	// again once a list succeeds.
	mu      sync.Mutex
	lastErr error
}

func (w *namespaceWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

func (w *namespaceWatch) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

// subscription is one Subscribe call.
type subscription struct {
	user, namespace string
	selector        labels.Selector
	fn              func()
	last            string // the target last reported
}

// New checks cfg, connects to the API server and, for a fixed namespace,
// waits for its first list of pods, so that an API server that cannot be
// reached, a token it refuses or a Role that does not allow listing pods
// is an error here and not at the first login. ctx bounds the start only.
// The caller must Close the Resolver.
func New(ctx context.Context, cfg Config) (*Resolver, error) {
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("podagents: port %d is not 1-65535", cfg.Port)
	}
	if cfg.Namespace == "" {
		return nil, errors.New("podagents: no namespace")
	}
	if cfg.Container == "" {
		cfg.Container = DefaultContainer
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tmpl, err := parseSelectorTemplate(cfg.Selector)
	if err != nil {
		return nil, err
	}
	if _, err := expandNamespace(cfg.Namespace, "user"); err != nil {
		return nil, err
	}
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	conns := newConnTracker()
	client, err := newClient(rc, conns)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	// client-go logs through klog; give it ours, contextually.
	rctx = klog.NewContext(rctx, logr.FromSlogHandler(cfg.Logger.Handler()))
	r := &Resolver{
		cfg:        cfg,
		log:        cfg.Logger,
		client:     client,
		conns:      conns,
		server:     rc.Host,
		template:   tmpl,
		watchSel:   tmpl.watchSelector(),
		ctx:        rctx,
		cancel:     cancel,
		namespaces: make(map[string]*namespaceWatch),
		subs:       make(map[*subscription]struct{}),
		chosen:     make(map[string]string),
	}
	sctx, scancel := context.WithTimeout(ctx, cfg.SyncTimeout)
	defer scancel()
	if err := r.ping(sctx, client); err != nil {
		r.Close()
		return nil, err
	}
	if !strings.Contains(cfg.Namespace, "{user}") {
		if _, err := r.namespace(sctx, cfg.Namespace); err != nil {
			r.Close()
			return nil, err
		}
	}
	r.log.Info("watching pods", "server", r.server, "namespace", cfg.Namespace, "selector", cfg.Selector, "container", cfg.Container, "port", cfg.Port)
	return r, nil
}

// ping asks the API server for its version: a server that cannot be
// reached or refuses the credentials fails here with a clear error.
func (r *Resolver) ping(ctx context.Context, client *rest.RESTClient) error {
	body, err := client.Get().AbsPath("/version").Do(ctx).Raw()
	var answered apierrors.APIStatus
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("podagents: kubernetes API at %s refused the credentials (the kubeconfig's or the service account's token or certificate): %w", r.server, err)
	case errors.As(err, &answered):
		return fmt.Errorf("podagents: kubernetes API at %s: %w", r.server, err)
	case err != nil:
		return fmt.Errorf("podagents: kubernetes API at %s unreachable: %w", r.server, err)
	}
	r.log.Debug("kubernetes API reached", "server", r.server, "version", string(body))
	return nil
}

// Close stops the informers and closes the connections to the API server.
// It returns when the informers' goroutines are gone. Resolve fails after
// Close.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.conns.closeAll()
	return nil
}

// errClosed is Resolve's error after Close.
var errClosed = errors.New("podagents: resolver closed")

// namespace returns the watch of ns, starting it if needed, once its first
// list is in (or ctx ends, or the list fails: then the error says why).
func (r *Resolver) namespace(ctx context.Context, ns string) (*namespaceWatch, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errClosed
	}
	w, ok := r.namespaces[ns]
	if !ok {
		var err error
		w, err = r.startNamespace(ns)
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		r.namespaces[ns] = w
	}
	r.mu.Unlock()
	if w.informer.HasSynced() {
		return w, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SyncTimeout)
	defer cancel()
	// HasSynced has no channel: poll it, every 20 ms, bounded by ctx.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !w.informer.HasSynced() {
		err := w.err()
		if err == nil {
			select {
			case <-ctx.Done():
				err = context.Cause(ctx)
			case <-r.ctx.Done():
				return nil, errClosed
			case <-t.C:
				continue
			}
		}
		// A namespace never listed is not kept: the next Resolve for it
		// starts afresh, rather than an informer retrying in the
		// background (a RoleBinding missing in a user's namespace).
		r.drop(w)
		return nil, fmt.Errorf("podagents: list pods in namespace %s at %s: %w", ns, r.server, err)
	}
	return w, nil
}

// drop stops the watch of a namespace that was never listed.
func (r *Resolver) drop(w *namespaceWatch) {
	r.mu.Lock()
	if r.namespaces[w.name] == w && !w.informer.HasSynced() {
		delete(r.namespaces, w.name)
		w.stop()
	}
	r.mu.Unlock()
}

// startNamespace starts the informer of ns; r.mu is held.
func (r *Resolver) startNamespace(ns string) (*namespaceWatch, error) {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = r.watchSel
			list := &corev1.PodList{}
			err := r.client.Get().Namespace(ns).Resource("pods").VersionedParams(&o, metav1.ParameterCodec).Do(ctx).Into(list)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector, o.Watch = r.watchSel, true
			return r.client.Get().Namespace(ns).Resource("pods").VersionedParams(&o, metav1.ParameterCodec).Watch(ctx)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	w := &namespaceWatch{name: ns, informer: inf}
	if err := inf.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		w.setErr(err)
		if ctx.Err() == nil {
			r.log.Warn("kubernetes API: listing or watching pods failed (retrying; logins are answered from the pods last seen)", "server", r.server, "namespace", ns, "err", err)
		}
	}); err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	logger := klog.FromContext(r.ctx)
	changed := func(any) { w.setErr(nil); r.changed(ns) }
	if _, err := inf.AddEventHandlerWithOptions(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: changed,
	}, cache.HandlerOptions{Logger: &logger}); err != nil {
		return nil, fmt.Errorf("podagents: %w", err)
	}
	ctx, stop := context.WithCancel(r.ctx)
	w.stop = stop
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		inf.RunWithContext(ctx)
	}()
	return w, nil
}

// slimPod keeps what Resolve reads of a pod, so that the cache holds no
// pod specs (which may carry environment values).
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone (cache.DeletedFinalStateUnknown)
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
			ResourceVersion: p.ResourceVersion, CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, cs := range p.Status.ContainerStatuses {
		slim.Status.ContainerStatuses = append(slim.Status.ContainerStatuses, corev1.ContainerStatus{Name: cs.Name, Ready: cs.Ready})
	}
	return slim, nil
}

// Resolve returns the address (ip:port) of user's agent: in the user's
// namespace, among the pods matching the user's selector whose agent
// container is ready, the one Choose picks. No such pod is a
// *NoReadyPodError. It reads the informer's cache; only the first call
// for a namespace of a template waits for that namespace's first list,
// bounded by ctx and Config.SyncTimeout.
func (r *Resolver) Resolve(ctx context.Context, user string) (string, error) {
	ns, sel, err := r.expand(user)
	if err != nil {
		return "", err
	}
	w, err := r.namespace(ctx, ns)
	if err != nil {
		return "", err
	}
	pods := matching(w.informer.GetStore().List(), sel)
	chosen, ready, why := Choose(pods, r.cfg.Container)
	if chosen == nil {
		r.forget(user)
		return "", &NoReadyPodError{User: user, Namespace: ns, Selector: sel.String(), NotReady: why}
	}
	target := net.JoinHostPort(chosen.Status.PodIP, strconv.Itoa(r.cfg.Port))
	r.logChoice(user, chosen, target, ready)
	return target, nil
}

// Describe says where user's pods are looked for, for logs:
// "pods in dev-alice matching upgate.dev/user=alice".
func (r *Resolver) Describe(user string) string {
	ns, sel, err := r.expand(user)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("pods in %s matching %s", ns, orAll(sel.String()))
}

// expand fills user into the namespace and selector templates.
func (r *Resolver) expand(user string) (string, labels.Selector, error) {
	ns, err := expandNamespace(r.cfg.Namespace, user)
	if err != nil {
		return "", nil, err
	}
	sel, err := r.template.expand(user)
	if err != nil {
		return "", nil, err
	}
	return ns, sel, nil
}

// matching returns the pods of objs that sel matches.
func matching(objs []any, sel labels.Selector) []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// logChoice logs the pod chosen for user when it differs from the last one.
func (r *Resolver) logChoice(user string, p *corev1.Pod, target string, ready int) {
	key := p.Namespace + "/" + p.Name + " " + target
	r.mu.Lock()
	same := r.chosen[user] == key
	r.chosen[user] = key
	r.mu.Unlock()
	if same {
		return
	}
	if ready > 1 {
		r.log.Info("agent pod chosen: the newest of several ready pods", "user", user, "namespace", p.Namespace, "pod", p.Name, "address", target, "ready_pods", ready)
		return
	}
	r.log.Info("agent pod chosen", "user", user, "namespace", p.Namespace, "pod", p.Name, "address", target)
}

func (r *Resolver) forget(user string) {
	r.mu.Lock()
	_, had := r.chosen[user]
	delete(r.chosen, user)
	r.mu.Unlock()
	if had {
		r.log.Warn("no ready agent pod", "user", user)
	}
}

// Subscribe calls fn whenever the address Resolve would return for user
// changes (another pod chosen, or none left), until the returned function
// is called. fn runs on an informer's goroutine: it must not block, and it
// should call Resolve to learn the new address. Changes are noticed while
// the user's namespace is watched: from New on for a fixed namespace, from
// the first Resolve for it on for a template's.
func (r *Resolver) Subscribe(user string, fn func()) (cancel func()) {
	ns, sel, err := r.expand(user)
	if err != nil {
		return func() {}
	}
	s := &subscription{user: user, namespace: ns, selector: sel, fn: fn}
	r.mu.Lock()
	if w, ok := r.namespaces[ns]; ok {
		s.last = r.targetIn(w, sel)
	}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
	}
}

// changed tells the subscribers of namespace ns whose address changed.
func (r *Resolver) changed(ns string) {
	var notify []func()
	r.mu.Lock()
	w := r.namespaces[ns]
	for s := range r.subs {
		if s.namespace != ns || w == nil {
			continue
		}
		if t := r.targetIn(w, s.selector); t != s.last {
			s.last = t
			notify = append(notify, s.fn)
		}
	}
	r.mu.Unlock()
	for _, fn := range notify {
		fn()
	}
}

// targetIn is the address Resolve would return in w for sel, or "".
func (r *Resolver) targetIn(w *namespaceWatch, sel labels.Selector) string {
	p, _, _ := Choose(matching(w.informer.GetStore().List(), sel), r.cfg.Container)
	if p == nil {
		return ""
	}
	return net.JoinHostPort(p.Status.PodIP, strconv.Itoa(r.cfg.Port))
}

// Choose picks the pod to send uploads to among pods: of those that are
// running, not being deleted, have an IP and whose container named
// container is ready, the newest (the latest creationTimestamp, then the
// greatest name). The newest, so that a replacement takes over as soon as
// its agent is ready, even while the pod it replaces lingers (a rollout
// with surge, a pod stuck terminating). It also returns how many pods were
// usable and, when none was, why each pod was passed over.
func Choose(pods []*corev1.Pod, container string) (chosen *corev1.Pod, usable int, notReady []string) {
	for _, p := range pods {
		if why := unusable(p, container); why != "" {
			notReady = append(notReady, p.Name+" ("+why+")")
			continue
		}
		usable++
		if chosen == nil || newer(p, chosen) {
			chosen = p
		}
	}
	slices.Sort(notReady)
	if chosen != nil {
		notReady = nil
	}
	return chosen, usable, notReady
}

// newer reports whether a is newer than b in Choose's order.
func newer(a, b *corev1.Pod) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}

// unusable says why p cannot take uploads, or "".
func unusable(p *corev1.Pod, container string) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "terminating"
	case p.Status.Phase != corev1.PodRunning:
		if p.Status.Phase == "" {
			return "not running"
		}
		return strings.ToLower(string(p.Status.Phase))
	case p.Status.PodIP == "":
		return "no IP"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			if cs.Ready {
				return ""
			}
			return "container " + container + " not ready"
		}
	}
	return "no container " + container
}
