package gateway

import (
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
	if err := g.agents.Reload(cfg.Agents); err != nil {
		return wrapf("%w", err)
	}
	g.mu.Lock()
	g.users = users
	g.mu.Unlock()
	g.registry.SetLimits(Limits{Max: cfg.Connections.Max, PerIP: cfg.Connections.MaxPerIP, PerUser: cfg.Connections.MaxPerUser})
	g.files.setMax(cfg.Connections.MaxFilesPerUser)
	g.log.Info("configuration reloaded", "users", len(users), "agents", len(cfg.Agents))
	return nil
}
