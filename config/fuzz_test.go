package config_test

// FuzzConfigParse feeds arbitrary bytes to config.Parse: it must never
// panic, must fail with a "config: " error, and whatever it accepts must
// hold every invariant the rest of upgate relies on without checking.

import (
	"path"
	"reflect"
	"strings"
	"testing"

	upgate "github.com/upgate/upgate"
	"github.com/upgate/upgate/config"
)

func FuzzConfigParse(f *testing.F) {
	def := string(upgate.DefaultConfig)
	f.Add([]byte(def))
	for _, edit := range [][2]string{
		{"root: demo ", "root: ../demo "},
		{"path: / ", "path: /api/ "},
		{"agent: embedded ", "agent: Embedded "},
		{"agent: embedded ", "agent: nowhere "},
		{"    mounts:", "    mounts: []\n    x:"},
		{"idle: 30s", "idle: 30"},
		{"ftp: 127.0.0.1:2121", "ftp: 0.0.0.0:2121"},
		{"passive_ports: \"30000-30099\"", "passive_ports: \"30099-30000\""},
		{"  embedded:\n    embedded: true", "  embedded:\n    embedded: false\n    address: \"dns:///{user}.agents:7000\"\n    token_file: t"},
		{"name: demo", "name: Demo.User"},
	} {
		if !strings.Contains(def, edit[0]) {
			f.Fatalf("config.yaml no longer holds %q", edit[0])
		}
		f.Add([]byte(strings.Replace(def, edit[0], edit[1], 1)))
	}
	for _, doc := range []string{
		"", "{}", "[]", "null", "listen: {ftp: ''}", "users: [{}]", "agents: {a: {embedded: true, root: r}}",
		"agents:\n  a: {embedded: true, root: r}\nusers:\n  - {name: u, authorized_keys: ['" + pubKey + "'], mounts: [{path: /, agent: a}]}",
		"a: &x [*x]", "connections: {max: -1}", "log: {level: loud}", "\t", "users: x", "agents: [1, 2]",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := config.Parse(doc)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("Parse error does not start with \"config: \": %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
		again, err := config.Parse(doc)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("Parse is not deterministic: %+v, then %+v, %v", c, again, err)
		}
		for name := range c.Agents {
			if name == "" || strings.ToLower(name) != name || strings.Contains(name, ".") {
				t.Fatalf("agent name %q is not a lower-case key", name)
			}
		}
		seen := map[string]bool{}
		for _, u := range c.Users {
			if u.Name == "" || seen[u.Name] {
				t.Fatalf("user name %q is empty or repeated", u.Name)
			}
			seen[u.Name] = true
			if u.PasswordHash == "" && len(u.AuthorizedKeys) == 0 {
				t.Fatalf("user %q has no way to log in", u.Name)
			}
			if len(u.Mounts) == 0 {
				t.Fatalf("user %q has no mount", u.Name)
			}
			paths := map[string]bool{}
			for _, m := range u.Mounts {
				if _, ok := c.Agents[m.Agent]; !ok {
					t.Fatalf("user %q mounts %q from agent %q, which is not configured", u.Name, m.Path, m.Agent)
				}
				if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path || paths[m.Path] {
					t.Fatalf("user %q: mount path %q is not absolute, clean and unique", u.Name, m.Path)
				}
				paths[m.Path] = true
				if r := m.Root; r != "" && (path.IsAbs(r) || path.Clean(r) != r || r == ".." || strings.HasPrefix(r, "../") || strings.Contains(r, `\`)) {
					t.Fatalf("user %q: mount root %q could leave the agent root", u.Name, r)
				}
			}
		}
		for _, d := range []struct {
			key string
			v   int64
		}{
			{"connections.keepalive.idle", int64(c.Connections.Keepalive.Idle)},
			{"connections.keepalive.interval", int64(c.Connections.Keepalive.Interval)},
			{"connections.keepalive.count", int64(c.Connections.Keepalive.Count)},
			{"connections.user_timeout", int64(c.Connections.UserTimeout)},
			{"connections.idle_timeout", int64(c.Connections.IdleTimeout)},
			{"connections.max", int64(c.Connections.Max)},
			{"connections.max_per_ip", int64(c.Connections.MaxPerIP)},
			{"connections.max_per_user", int64(c.Connections.MaxPerUser)},
			{"connections.progress_timeout", int64(c.Connections.ProgressTimeout)},
			{"connections.drain_timeout", int64(c.Connections.DrainTimeout)},
			{"sftp.handshake_timeout", int64(c.SFTP.HandshakeTimeout)},
			{"sftp.keepalive.interval", int64(c.SFTP.Keepalive.Interval)},
			{"defender.window", int64(c.Defender.Window)},
			{"defender.ban_time", int64(c.Defender.BanTime)},
		} {
			if d.v <= 0 {
				t.Fatalf("%s = %d, want > 0", d.key, d.v)
			}
		}
	})
}
