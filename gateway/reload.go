package gateway

import (
	"github.com/upgate/upgate/config"
)

// Reload applies a new, validated configuration's users, agents and
// connection limits without a restart; concurrent calls run one at a time. Zero durations and counts in cfg
// mean their defaults, as for New. New logins see the new config. Live
// sessions keep their filesystems and agent connections, except those
// whose login the new users no longer accept (the user removed, the
// password or the key it logged in with changed or removed, the user's
// mounts changed): they end, and their clients are told why
// (revokeStale); Reload returns once they are closed.
// Embedded agents cannot be added, removed or changed (they own a
// directory and a listener): such a config is refused, and so is one with
// a bad token file; on error nothing changes.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	cfg = cfg.WithDefaults()
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
	revoked := g.revokeStale(users)
	g.registry.SetLimits(Limits{Max: cfg.Connections.Max, PerIP: cfg.Connections.MaxPerIP, PerUser: cfg.Connections.MaxPerUser})
	g.files.setMax(cfg.Connections.MaxFilesPerUser)
	g.log.Info("configuration reloaded", "users", len(users), "agents", len(cfg.Agents), "sessions_revoked", revoked)
	return nil
}
