package agents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/podagents"
	"github.com/upgate/upgate/config"
)

// kubeAgents are the agents found through the Kubernetes API
// (agents.NAME.kubernetes): one podagents.Resolver per agent entry, and
// one backend.FollowConn per agent and user, shared by that user's
// sessions, whose target follows the user's pod. Pool.mu guards it.
type kubeAgents struct {
	resolvers map[string]*podagents.Resolver // by agent name
	conns     map[string]*kubeConn           // by agent name and user
	// retired are replaced by a reload and still used by live sessions;
	// closed with the pool.
	retired []*podagents.Resolver
	retConn []*kubeConn
}

// kubeConn is one user's connection to their pod's agent.
type kubeConn struct {
	fc          *backend.FollowConn
	unsubscribe func()
}

func (k *kubeConn) close() {
	k.unsubscribe()
	_ = k.fc.Close()
}

// refreshTimeout bounds a FollowConn's re-resolution when the resolver
// reports a change (a cache read once the namespace is listed).
const refreshTimeout = 5 * time.Second

// startResolver starts the resolver of a Kubernetes agent; the API server
// must answer within ctx.
func (p *Pool) startResolver(ctx context.Context, name string, a config.Agent) (*podagents.Resolver, error) {
	k := a.Kubernetes
	r, err := podagents.New(ctx, podagents.Config{
		Namespace:  k.Namespace,
		Selector:   k.Selector,
		Container:  k.Container,
		Port:       k.Port,
		Kubeconfig: k.Kubeconfig,
		Logger:     p.log.With("agent", name),
	})
	if err != nil {
		return nil, fmt.Errorf("agents.%s.kubernetes: %w", name, err)
	}
	return r, nil
}

// kubeConn returns the connection of user to the Kubernetes agent name,
// creating it on first use; p.mu is held. The second result describes
// the target for logs.
func (p *Pool) kubeConn(name, user string, a config.Agent) (grpc.ClientConnInterface, string, error) {
	r := p.kube.resolvers[name]
	if r == nil {
		return nil, "", fmt.Errorf("user %s: agent %q has no Kubernetes resolver", user, name)
	}
	key := name + "\x00" + user
	if kc, ok := p.kube.conns[key]; ok {
		return kc.fc, p.kubeTarget(kc, r, user), nil
	}
	tlsConf, err := clientTLS(a.TLS)
	if err != nil {
		return nil, "", fmt.Errorf("agents.%s.tls: %w", name, err)
	}
	token, observe := p.tokens[name], p.observer(name)
	log := p.log.With("agent", name, "user", user)
	fc := backend.NewFollowConn(backend.FollowOptions{
		Resolve: func(ctx context.Context) (string, error) { return r.Resolve(ctx, user) },
		Dial: func(target string) (*grpc.ClientConn, error) {
			return backend.Dial(target, backend.DialOptions{Token: token, TLS: tlsConf, Observe: observe})
		},
		OnSwitch: func(old, new string) {
			switch {
			case old == "":
				log.Info("agent pod connected", "address", new)
			case new == "":
				log.Warn("agent pod gone: its transfers abort", "address", old)
			default:
				log.Info("agent pod replaced: new operations go to the new pod, transfers on the old one abort", "old", old, "address", new)
			}
		},
	})
	kc := &kubeConn{fc: fc}
	kc.unsubscribe = r.Subscribe(user, func() {
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		defer cancel()
		fc.Refresh(ctx)
	})
	if p.kube.conns == nil {
		p.kube.conns = make(map[string]*kubeConn)
	}
	p.kube.conns[key] = kc
	return fc, p.kubeTarget(kc, r, user), nil
}

func (p *Pool) kubeTarget(kc *kubeConn, r *podagents.Resolver, user string) string {
	if t := kc.fc.Target(); t != "" {
		return t
	}
	return r.Describe(user)
}

// reloadKube starts resolvers for the Kubernetes agents that are new or
// changed in agents. On error none is kept. The caller swaps them in with
// swapKube.
func (p *Pool) reloadKube(agents map[string]config.Agent) (map[string]*podagents.Resolver, error) {
	fresh := make(map[string]*podagents.Resolver)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range sortedNames(agents) {
		a := agents[name]
		if !a.Kubernetes.Enabled() {
			continue
		}
		p.mu.Lock()
		old, same := p.configs[name]
		r := p.kube.resolvers[name]
		p.mu.Unlock()
		if same && r != nil && old.Kubernetes == a.Kubernetes {
			continue
		}
		r, err := p.startResolver(ctx, name, a)
		if err != nil {
			for _, r := range fresh {
				_ = r.Close()
			}
			return nil, err
		}
		fresh[name] = r
	}
	return fresh, nil
}

// swapKube installs the resolvers from reloadKube and retires those of
// changed or removed agents, with their users' connections (live sessions
// keep them); p.mu is held.
func (p *Pool) swapKube(agents map[string]config.Agent, changed []string, fresh map[string]*podagents.Resolver) {
	if p.kube.resolvers == nil {
		p.kube.resolvers = make(map[string]*podagents.Resolver)
	}
	for _, name := range changed {
		if r, ok := p.kube.resolvers[name]; ok && (fresh[name] != nil || !agents[name].Kubernetes.Enabled()) {
			p.kube.retired = append(p.kube.retired, r)
			delete(p.kube.resolvers, name)
		}
		for key, kc := range p.kube.conns {
			if len(key) > len(name) && key[:len(name)+1] == name+"\x00" {
				p.kube.retConn = append(p.kube.retConn, kc)
				delete(p.kube.conns, key)
			}
		}
	}
	for name, r := range fresh {
		p.kube.resolvers[name] = r
	}
}

// closeKube closes every user connection and stops every resolver; p.mu
// is held.
func (p *Pool) closeKube() error {
	for _, kc := range p.kube.conns {
		kc.close()
	}
	for _, kc := range p.kube.retConn {
		kc.close()
	}
	clear(p.kube.conns)
	p.kube.retConn = nil
	var errs []error
	for name, r := range p.kube.resolvers {
		if err := r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close agent %s resolver: %w", name, err))
		}
	}
	for _, r := range p.kube.retired {
		_ = r.Close()
	}
	clear(p.kube.resolvers)
	p.kube.retired = nil
	return errors.Join(errs...)
}
