package gateway

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/upgate/upgate/config"
)

// Reload applies a new, validated configuration's users, agents and
// connection limits without a restart. Live sessions keep their
// filesystems and agent connections; new logins see the new config.
// Embedded agents cannot be added, removed or changed (they own a
// directory and a listener): such a config is refused, and so is one with
// a bad token file; on error nothing changes.
func (g *Gateway) Reload(cfg *config.Config) error {
	users, err := loadUsers(cfg)
	if err != nil {
		return err
	}
	if err := g.agents.reload(cfg.Agents); err != nil {
		return err
	}
	g.mu.Lock()
	g.users = users
	g.mu.Unlock()
	g.registry.SetLimits(Limits{Max: cfg.Connections.Max, PerIP: cfg.Connections.MaxPerIP, PerUser: cfg.Connections.MaxPerUser})
	g.files.setMax(cfg.Connections.MaxFilesPerUser)
	g.log.Info("configuration reloaded", "users", len(users), "agents", len(cfg.Agents))
	return nil
}

// reload swaps in new agent configs. Connections of changed or removed
// agents are kept for the sessions using them and closed with the pool.
func (p *agentPool) reload(agents map[string]config.Agent) error {
	for name, a := range agents {
		old, existed := p.configs[name]
		if a.Embedded || (existed && old.Embedded) {
			if !existed || !reflect.DeepEqual(old, a) {
				return wrapf("agents.%s: embedded agents cannot change without a restart", name)
			}
		}
	}
	for name, a := range p.configs {
		if _, kept := agents[name]; !kept && a.Embedded {
			return wrapf("agents.%s: embedded agents cannot be removed without a restart", name)
		}
	}
	fresh, err := p.reloadKube(agents)
	if err != nil {
		return err
	}
	tokens := make(map[string]string)
	for name, a := range agents {
		if a.Embedded {
			continue
		}
		tok, err := readToken(a.TokenFile)
		if err != nil {
			for _, r := range fresh {
				_ = r.Close()
			}
			return wrapf("agents.%s.token_file: %w", name, err)
		}
		tokens[name] = tok
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var changed []string
	for name, a := range agents {
		old, existed := p.configs[name]
		if !existed || !reflect.DeepEqual(old, a) || p.tokens[name] != tokens[name] {
			changed = append(changed, name)
		}
	}
	for name := range p.configs {
		if _, kept := agents[name]; !kept {
			changed = append(changed, name)
		}
	}
	// New logins dial afresh; live sessions keep the old connections.
	for key, cc := range p.conns {
		for _, name := range changed {
			if len(key) > len(name) && key[:len(name)+1] == name+"\x00" {
				p.retired = append(p.retired, cc)
				delete(p.conns, key)
			}
		}
	}
	p.swapKube(agents, changed, fresh)
	sort.Strings(changed)
	if len(changed) > 0 {
		p.log.Info("agents changed", "agents", fmt.Sprint(changed))
	}
	p.configs, p.tokens = agents, tokens
	return nil
}
