package config_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"golang.org/x/crypto/bcrypt"

	upgate "github.com/upgate/upgate"
	"github.com/upgate/upgate/config"
)

const (
	// hash is bcrypt("demo", 10), as in config.yaml.
	hash = "$2a$10$0dpFMcElNIdnuOWc24Tu0etZdlvxE/kdYthC5JCobH9zWg1lGE9Z6"
	// pubKey is a valid authorized_keys line.
	pubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIwo09js4sOu0dBol1w6lyrDm7rIzjdNmCjSdmSzdTK3 alice@host"
)

// withUser returns a document with an embedded agent "local" and one user
// whose mapping body (indented under "- ") is user.
func withUser(user string) string {
	return `
agents:
  local: {embedded: true, root: data}
users:
  - ` + strings.ReplaceAll(strings.TrimSpace(user), "\n", "\n    ") + "\n"
}

// alice is a valid user body for withUser.
const alice = `name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local}]`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error; "" means no error
	}{
		{"empty document", ``, ""},
		{"valid user", withUser(alice), ""},
		{"valid remote agent", `
agents:
  dev: {address: "{user}-php.dev.svc:7070", token_file: /etc/upgate/agent-token}
  mtls: {address: "dns:///agent:7070", tls: {cert: c.pem, key: k.pem}}
  sock: {address: "unix:/run/agent.sock", token_file: t}`, ""},
		{"valid key-only user", withUser(`name: bob.smith
authorized_keys: ["` + pubKey + `"]
mounts: [{path: /, agent: local, root: projects/bob, read_only: true}]`), ""},
		{"listeners off", `listen: {ftp: "", sftp: "", admin: ""}`, ""},
		{"ipv6 listener", `listen: {ftp: "[::1]:21"}`, ""},

		// Unknown keys and bad types.
		{"unknown top key", `lissen: {ftp: x}`, `config: lissen: unknown key`},
		{"unknown nested key", `listen: {ftpp: "127.0.0.1:21"}`, `config: listen.ftpp: unknown key`},
		{"unknown agent key", `agents: {web: {embedded: true, root: d, rot: x}}`, `config: agents.web.rot: unknown key`},
		{"unknown user key", withUser(alice + "\npasword: x"), `config: users[0].pasword: unknown key`},
		{"unknown mount key", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local, readonly: true}]`), `config: users[0].mounts[0].readonly: unknown key`},
		{"bad int", `connections: {max: lots}`, `config: connections.max: cannot parse "lots" as int`},
		{"bad bool", `ftp: {tls: {required: maybe}}`, `config: ftp.tls.required: cannot parse "maybe" as bool`},
		{"bare number duration", `connections: {idle_timeout: 60}`, `config: connections.idle_timeout: 60 is not a duration`},
		{"bad duration", `connections: {idle_timeout: soon}`, `config: connections.idle_timeout: time: invalid duration "soon"`},
		{"bad yaml", "listen: [\n", `config: parse document: yaml:`},

		// Listeners.
		{"listen not host:port", `listen: {ftp: foo}`, `config: listen.ftp: "foo" is not host:port`},
		{"listen bad port", `listen: {admin: "127.0.0.1:99999"}`, `config: listen.admin: "127.0.0.1:99999" is not host:port`},
		{"listen named port", `listen: {sftp: "127.0.0.1:ssh"}`, `config: listen.sftp: "127.0.0.1:ssh" is not host:port`},

		// Connections.
		{"negative count", `connections: {keepalive: {count: -1}}`, `config: connections.keepalive.count: must be > 0 (or 0 for the default), got -1`},
		{"zero interval is the default", `connections: {keepalive: {interval: 0s}}`, ""},
		{"negative idle", `connections: {keepalive: {idle: -5s}}`, `config: connections.keepalive.idle: must be > 0 (or 0 for the default), got -5s`},
		{"negative user_timeout", `connections: {user_timeout: -1s}`, `config: connections.user_timeout: must be > 0 (or 0 for the default), got -1s`},
		{"negative idle_timeout", `connections: {idle_timeout: -1h}`, `config: connections.idle_timeout: must be > 0 (or 0 for the default), got -1h0m0s`},
		{"negative max", `connections: {max: -1}`, `config: connections.max: must be > 0 (or 0 for the default), got -1`},
		{"negative max_per_ip", `connections: {max_per_ip: -2}`, `config: connections.max_per_ip: must be > 0 (or 0 for the default), got -2`},
		{"negative drain", `connections: {drain_timeout: -3s}`, `config: connections.drain_timeout: must be > 0 (or 0 for the default), got -3s`},
		{"bad cidr", `connections: {proxy_protocol: {trusted: [10.0.0.0/8, 10.0.0.1]}}`, `config: connections.proxy_protocol.trusted[1]: "10.0.0.1" is not a CIDR`},
		{"bad allowlist cidr", `defender: {allowlist: [fd00::/8, "10.0.0.0/33"]}`, `config: defender.allowlist[1]: "10.0.0.0/33" is not a CIDR`},

		// FTP.
		{"passive reversed", `ftp: {passive_ports: "30019-30000"}`, `config: ftp.passive_ports: "30019-30000" is not a port range`},
		{"passive zero", `ftp: {passive_ports: "0-10"}`, `config: ftp.passive_ports: "0-10" is not a port range`},
		{"passive too high", `ftp: {passive_ports: "65535-65536"}`, `config: ftp.passive_ports: "65535-65536" is not a port range`},
		{"passive single", `ftp: {passive_ports: "30000"}`, `config: ftp.passive_ports: "30000" is not a port range`},
		{"passive empty", `ftp: {passive_ports: ""}`, ""},
		{"passive one port", `ftp: {passive_ports: "2000-2000"}`, ""},
		{"public host name", `ftp: {public_host: ftp.example.com}`, `config: ftp.public_host: "ftp.example.com" is not an IP address`},
		{"tls cert without key", `ftp: {tls: {cert: c.pem}}`, `config: ftp.tls: cert and key must be set together`},
		{"tls required without cert", `ftp: {tls: {required: true}}`, `config: ftp.tls.required: needs ftp.tls.cert`},

		// SFTP.
		{"no host keys", `sftp: {host_keys: []}`, `config: sftp.host_keys: must not be empty while listen.sftp is set`},
		{"no host keys, sftp off", `{listen: {sftp: ""}, sftp: {host_keys: []}}`, ""},
		{"empty host key", `sftp: {host_keys: [""]}`, `config: sftp.host_keys[0]: must not be empty`},
		{"negative ssh interval", `sftp: {keepalive: {interval: -20s}}`, `config: sftp.keepalive.interval: must be > 0 (or 0 for the default), got -20s`},
		{"negative max_missed", `sftp: {keepalive: {max_missed: -1}}`, `config: sftp.keepalive.max_missed: must be > 0 (or 0 for the default), got -1`},

		// WebDAV.
		{"webdav on loopback, plain", `listen: {webdav: "127.0.0.1:8443"}`, ""},
		{"webdav on localhost, plain", `listen: {webdav: "localhost:8443"}`, ""},
		{"webdav off loopback, plain", `listen: {webdav: "0.0.0.0:8443"}`, `config: listen.webdav: "0.0.0.0:8443" is not a loopback address: set webdav.tls.cert and webdav.tls.key`},
		{"webdav on every interface, plain", `listen: {webdav: ":8443"}`, `config: listen.webdav: ":8443" is not a loopback address`},
		{"webdav off loopback, TLS", `{listen: {webdav: ":8443"}, webdav: {tls: {cert: c.pem, key: k.pem}}}`, ""},
		{"webdav off loopback, plain allowed", `{listen: {webdav: "10.0.0.5:8080"}, webdav: {allow_plain_http: true}}`, ""},
		{"webdav cert without key", `webdav: {tls: {cert: c.pem}}`, `config: webdav.tls: cert and key must be set together`},
		{"webdav negative header_timeout", `webdav: {header_timeout: -1s}`, `config: webdav.header_timeout: must be > 0 (or 0 for the default), got -1s`},
		{"webdav unknown key", `webdav: {tls: {required: true}}`, `config: webdav.tls.required: unknown key`},
		{"demo on webdav off loopback", demo(`{webdav: "0.0.0.0:8443"}`) + "webdav: {tls: {cert: c.pem, key: k.pem}}\n", `config: user "demo" is for the embedded default only and is refused on non-loopback listener listen.webdav "0.0.0.0:8443"`},

		// Agents.
		{"embedded without root", `agents: {e: {embedded: true}}`, `config: agents.e.root: required for an embedded agent`},
		{"embedded with address", `agents: {e: {embedded: true, root: d, address: "h:1"}}`, `config: agents.e.address: must be empty for an embedded agent, got "h:1"`},
		{"embedded with token", `agents: {e: {embedded: true, root: d, token_file: t}}`, `config: agents.e.token_file: must be empty for an embedded agent`},
		{"remote without address", `agents: {r: {token_file: t}}`, `config: agents.r.address: required for a remote agent`},
		{"remote with root", `agents: {r: {address: "h:1", token_file: t, root: d}}`, `config: agents.r.root: only for an embedded agent`},
		{"remote without token", `agents: {r: {address: "h:1"}}`, `config: agents.r.token_file: required for a remote agent unless tls.cert is set`},
		{"remote bad address", `agents: {r: {address: "agent", token_file: t}}`, `config: agents.r.address: "agent" is not host:port`},
		{"remote bad placeholder", `agents: {r: {address: "{name}:7070", token_file: t}}`, `config: agents.r.address: "{name}:7070" has an unknown placeholder`},
		{"remote tls key without cert", `agents: {r: {address: "h:1", token_file: t, tls: {key: k.pem}}}`, `config: agents.r.tls: cert and key must be set together`},
		{"agent name with dot", `agents: {"a.b": {embedded: true, root: d}}`, `config: agents.a.b: unknown key`},
		{"remote agent with hooks", `agents: {r: {address: "h:1", token_file: t, hooks: h.yaml}}`, `config: agents.r.hooks: only for an embedded agent`},
		{"hooks inside the root", `agents: {e: {embedded: true, root: srv, hooks: srv/hooks.yaml}}`, `config: agents.e.hooks: hook file "srv/hooks.yaml" is inside agents.e.root "srv"`},
		{"hooks next to the root", `agents: {e: {embedded: true, root: srv, hooks: etc/hooks.yaml}}`, ""},

		// Agents found through the Kubernetes API.
		{"valid kubernetes agents", `
agents:
  dev: {kubernetes: {namespace: dev, selector: "upgate.dev/user={user},app=php", port: 7070}, token_file: t}
  own: {kubernetes: {namespace: "dev-{user}", port: 7070, container: agent, kubeconfig: /k}, token_file: t}
  mtls: {kubernetes: {namespace: "dev-{user}", port: 7070}, tls: {cert: c.pem, key: k.pem, server_name: agent.dev}}`, ""},
		{"kubernetes unknown key", `agents: {k: {kubernetes: {namespace: dev, selector: "u={user}", port: 1, nmespace: x}, token_file: t}}`, `config: agents.k.kubernetes.nmespace: unknown key`},
		{"kubernetes with address", `agents: {k: {address: "h:1", kubernetes: {namespace: dev, selector: "u={user}", port: 1}, token_file: t}}`, `config: agents.k.address: must be empty with kubernetes`},
		{"kubernetes embedded", `agents: {k: {embedded: true, root: d, kubernetes: {namespace: dev}}}`, `config: agents.k.kubernetes: must be empty for an embedded agent`},
		{"kubernetes without namespace", `agents: {k: {kubernetes: {selector: "u={user}", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.namespace: required`},
		{"kubernetes bad namespace", `agents: {k: {kubernetes: {namespace: Dev_1, selector: "u={user}", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.namespace: "Dev_1" is not a namespace name`},
		{"kubernetes namespace placeholder", `agents: {k: {kubernetes: {namespace: "dev-{name}", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.namespace: "dev-{name}" has an unknown placeholder`},
		{"kubernetes bad selector", `agents: {k: {kubernetes: {namespace: dev, selector: "u=={user},,", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.selector: "u=={user},," is not a label selector`},
		{"kubernetes selector placeholder", `agents: {k: {kubernetes: {namespace: dev, selector: "u={login}", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.selector: "u={login}" has an unknown placeholder`},
		{"kubernetes without user", `agents: {k: {kubernetes: {namespace: dev, selector: "app=php", port: 1}, token_file: t}}`, `config: agents.k.kubernetes.selector: "app=php" does not contain {user} and neither does namespace "dev": every user would land in the same pod`},
		{"kubernetes without port", `agents: {k: {kubernetes: {namespace: "dev-{user}"}, token_file: t}}`, `config: agents.k.kubernetes.port: 0 is not a port`},
		{"kubernetes port too high", `agents: {k: {kubernetes: {namespace: "dev-{user}", port: 70000}, token_file: t}}`, `config: agents.k.kubernetes.port: 70000 is not a port`},
		{"kubernetes bad container", `agents: {k: {kubernetes: {namespace: "dev-{user}", port: 1, container: Agent}, token_file: t}}`, `config: agents.k.kubernetes.container: "Agent" is not a container name`},
		{"kubernetes without token", `agents: {k: {kubernetes: {namespace: "dev-{user}", port: 1}}}`, `config: agents.k.token_file: required for a remote agent unless tls.cert is set`},
		{"kubernetes tls without server name", `agents: {k: {kubernetes: {namespace: "dev-{user}", port: 1}, tls: {ca: ca.pem}, token_file: t}}`, `config: agents.k.tls.server_name: required with kubernetes`},
		{"kubernetes user not a namespace", `
agents: {k: {kubernetes: {namespace: "dev-{user}", port: 1}, token_file: t}}
users: [{name: Alice, password_hash: "` + hash + `", mounts: [{path: /, agent: k}]}]`, `config: users[0].mounts[0].agent: agent "k" puts the user name in the namespace "dev-{user}", but "Alice" is not a DNS label`},
		{"kubernetes user as a label value", `
agents: {k: {kubernetes: {namespace: dev, selector: "upgate.dev/user={user}", port: 1}, token_file: t}}
users: [{name: Alice.B, password_hash: "` + hash + `", mounts: [{path: /, agent: k}]}]`, ""},
		{"kubernetes user not a label value", `
agents: {k: {kubernetes: {namespace: dev, selector: "upgate.dev/user={user}", port: 1}, token_file: t}}
users: [{name: "-alice", password_hash: "` + hash + `", mounts: [{path: /, agent: k}]}]`, `config: users[0].mounts[0].agent: agent "k" puts the user name in the selector "upgate.dev/user={user}", but "-alice" is not a label value there`},

		// Users.
		{"user without name", withUser(`password_hash: "` + hash + `"
mounts: [{path: /, agent: local}]`), `config: users[0].name: must not be empty`},
		{"user bad name", withUser(`name: "al ice"
password_hash: "` + hash + `"
mounts: [{path: /, agent: local}]`), `config: users[0].name: "al ice" is not a valid user name`},
		{"duplicate user", withUser(alice) + "  - " + strings.ReplaceAll(alice, "\n", "\n    ") + "\n", `config: users[1].name: "alice" is also users[0].name`},
		{"bad hash", withUser(`name: alice
password_hash: "demo"
mounts: [{path: /, agent: local}]`), `config: users[0].password_hash: not a bcrypt hash`},
		{"bad key", withUser(`name: alice
authorized_keys: ["ssh-ed25519 nonsense"]
mounts: [{path: /, agent: local}]`), `config: users[0].authorized_keys[0]: "ssh-ed25519 nonsense": ssh: no key found`},
		{"no credentials", withUser(`name: alice
mounts: [{path: /, agent: local}]`), `config: users[0]: user "alice" needs a password_hash or at least one authorized_keys entry`},
		{"no mounts", withUser(`name: alice
password_hash: "` + hash + `"`), `config: users[0].mounts: at least one mount is required`},
		{"relative mount path", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: www, agent: local}]`), `config: users[0].mounts[0].path: "www" must be an absolute, clean path`},
		{"unclean mount path", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /www/, agent: local}]`), `config: users[0].mounts[0].path: "/www/" must be an absolute, clean path`},
		{"two mounts at one path", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local}, {path: /, agent: local}]`), `config: users[0].mounts[1].path: "/" is also users[0].mounts[0].path`},
		{"unknown agent", withUser(alice) + `  - name: bob
    password_hash: "` + hash + `"
    mounts: [{path: /, agent: web}]
`, `config: users[1].mounts[0].agent: "web" is not a configured agent`},
		{"upper-case agent", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: Local}]`), `config: users[0].mounts[0].agent: "Local" is not a configured agent (agent names are lower-case: write "local")`},
		{"mount without agent", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /}]`), `config: users[0].mounts[0].agent: required`},
		{"absolute root", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local, root: /etc}]`), `config: users[0].mounts[0].root: "/etc" must be a relative, clean`},
		{"dotdot root", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local, root: ../x}]`), `config: users[0].mounts[0].root: "../x" must be a relative, clean`},
		{"unclean root", withUser(`name: alice
password_hash: "` + hash + `"
mounts: [{path: /, agent: local, root: a/../b}]`), `config: users[0].mounts[0].root: "a/../b" must be a relative, clean`},

		// Log.
		{"bad level", `log: {level: verbose}`, `config: log.level: "verbose" is not one of debug, info, warn, error`},
		{"bad format", `log: {format: xml}`, `config: log.format: "xml" is not one of text, json`},

		// The demo user.
		{"demo on loopback", demo(`{ftp: "127.0.0.1:2121", sftp: "localhost:2222", admin: "0.0.0.0:9100"}`) + "admin: {token_file: /run/t}\n", ""},
		{"demo on ipv6 loopback", demo(`{ftp: "[::1]:2121", sftp: ""}`), ""},
		{"demo on all interfaces", demo(`{sftp: "0.0.0.0:2222"}`), `config: user "demo" is for the embedded default only and is refused on non-loopback listener listen.sftp "0.0.0.0:2222"`},
		{"demo on empty host", demo(`{ftp: ":2121"}`), `config: user "demo" is for the embedded default only and is refused on non-loopback listener listen.ftp ":2121"`},
		{"demo on a name", demo(`{ftp: "ftp.example.com:21"}`), `refused on non-loopback listener listen.ftp "ftp.example.com:21"`},
		{"Demo in another case", "listen: {sftp: \"0.0.0.0:2222\"}\n" + withUser(`name: Demo
password_hash: "`+hash+`"
mounts: [{path: /, agent: local, root: demo}]`), `config: user "Demo" is for the embedded default only and is refused on non-loopback listener listen.sftp "0.0.0.0:2222"`},
		{"DEMO with a key only", "listen: {ftp: \":2121\"}\n" + withUser(`name: DEMO
authorized_keys: ["`+pubKey+`"]
mounts: [{path: /, agent: local}]`), `config: user "DEMO" is for the embedded default only`},
		{"demo password under another name", "listen: {ftp: \"0.0.0.0:2121\"}\n" + withUser(alice), `config: user "alice" is for the embedded default only and is refused on non-loopback listener listen.ftp "0.0.0.0:2121"`},

		// The admin API.
		{"admin off loopback without token", `listen: {admin: "0.0.0.0:9100"}`, `config: admin.token_file: required when listen.admin "0.0.0.0:9100" is not a loopback address`},
		{"admin on every interface without token", `listen: {admin: ":9100"}`, `config: admin.token_file: required when listen.admin ":9100" is not a loopback address`},
		{"admin off loopback with token", `{listen: {admin: "0.0.0.0:9100"}, admin: {token_file: /run/t}}`, ""},
		{"admin on ipv6 loopback without token", `listen: {admin: "[::1]:9100"}`, ""},
		{"admin on localhost without token", `listen: {admin: "localhost:9100"}`, ""},

		// Host keys and agent roots.
		{"host key inside an agent root", `{sftp: {host_keys: [data/ssh_host_ed25519_key]}, agents: {local: {embedded: true, root: data}}}`,
			`config: sftp.host_keys[0]: host key "data/ssh_host_ed25519_key" is inside agents.local.root "data"`},
		{"host key deep inside an agent root", `{sftp: {host_keys: [keys/k, ./srv/www/../etc/k]}, agents: {local: {embedded: true, root: ./srv}}}`,
			`config: sftp.host_keys[1]: host key "./srv/www/../etc/k" is inside agents.local.root "./srv"`},
		{"host key next to an agent root", `{sftp: {host_keys: [data-keys/k, data/../k]}, agents: {local: {embedded: true, root: data}}}`, ""},
		{"agent root is the working directory", `{sftp: {host_keys: [k]}, agents: {local: {embedded: true, root: .}}}`,
			`config: sftp.host_keys[0]: host key "k" is inside agents.local.root "."`},

		// Caps and timeouts of issue 14.
		{"negative login_timeout", `ftp: {login_timeout: -30s}`, `config: ftp.login_timeout: must be > 0 (or 0 for the default), got -30s`},
		{"negative passive_timeout", `ftp: {passive_timeout: -1s}`, `config: ftp.passive_timeout: must be > 0 (or 0 for the default), got -1s`},
		{"negative max_channels", `sftp: {max_channels: -1}`, `config: sftp.max_channels: must be > 0 (or 0 for the default), got -1`},
		{"negative exec_max_files", `sftp: {exec_max_files: -1}`, `config: sftp.exec_max_files: must be > 0 (or 0 for the default), got -1`},
		{"negative max_handles", `sftp: {max_handles: -1}`, `config: sftp.max_handles: must be > 0 (or 0 for the default), got -1`},
		{"two keys in one entry", withUser(`name: alice
authorized_keys: ["` + pubKey + `\n` + pubKey + `"]
mounts: [{path: /, agent: local}]`), `config: users[0].authorized_keys[0]: "` + pubKey + `\n` + pubKey + `" holds more than one key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v\n%s", err, tt.yaml)
				}
				if c == nil {
					t.Fatal("Parse returned nil Config and nil error")
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q\n%s", tt.want, tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: ") {
					t.Errorf("error line %q lacks the \"config: \" prefix", line)
				}
			}
			if c != nil {
				t.Error("Parse returned a Config with an error")
			}
		})
	}
}

// demo returns a document with the demo user and the given listen map.
func demo(listen string) string {
	return "listen: " + listen + "\n" + withUser(`name: demo
password_hash: "`+hash+`"
mounts: [{path: /, agent: local, root: demo}]`)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Listen.FTP = "foo"
	c.Connections.Max = -1
	c.Log.Level = "loud"
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, want := range []string{"listen.ftp", "connections.max", "log.level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Config{
		Listen: config.Listen{FTP: "127.0.0.1:2121", SFTP: "127.0.0.1:2222", Admin: "127.0.0.1:9100"},
		Connections: config.Connections{
			Keepalive:       config.Keepalive{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3},
			UserTimeout:     60 * time.Second,
			IdleTimeout:     time.Hour,
			Max:             4096,
			MaxPerIP:        64,
			MaxPerUser:      64,
			MaxFilesPerUser: 1024,
			ProgressTimeout: 2 * time.Minute,
			ProxyProtocol:   config.ProxyProtocol{Trusted: []netip.Prefix{}},
			DrainTimeout:    30 * time.Second,
		},
		FTP: config.FTP{PassivePorts: config.PortRange{First: 30000, Last: 30099}, PassiveTimeout: 15 * time.Second, LoginTimeout: 30 * time.Second},
		SFTP: config.SFTP{
			HostKeys:         []string{"keys/ssh_host_ed25519_key", "keys/ssh_host_ecdsa_key", "keys/ssh_host_rsa_key"},
			Keepalive:        config.SSHKeepalive{Interval: 20 * time.Second, MaxMissed: 3},
			HandshakeTimeout: 30 * time.Second,
			MaxAuthTries:     6,
			MaxChannels:      16,
			ExecMaxFiles:     100,
			MaxHandles:       256,
		},
		WebDAV:   config.WebDAV{HeaderTimeout: 30 * time.Second},
		Defender: config.Defender{Enabled: true, MaxFailures: 10, Window: time.Minute, BanTime: 15 * time.Minute, Allowlist: []netip.Prefix{}},
		Log:      config.Log{Level: "info", Format: "text"},
		CPU:      config.CPU{Adaptive: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(nil) =\n%+v\nwant\n%+v", got, want)
	}
}

func TestEmbeddedDefault(t *testing.T) {
	c, err := config.Load("", upgate.DefaultConfig, nil)
	if err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	defaults, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Apart from agents and users, config.yaml spells out the built-in
	// defaults.
	c2 := *c
	c2.Agents, c2.Users = nil, nil
	if !reflect.DeepEqual(&c2, defaults) {
		t.Errorf("config.yaml differs from the built-in defaults:\n%+v\nwant\n%+v", c2, *defaults)
	}
	if a, ok := c.Agents["embedded"]; !ok || !a.Embedded || a.Root != "data" {
		t.Errorf(`agents["embedded"] = %+v, %v; want embedded over "data"`, a, ok)
	}
	u, ok := c.User("demo")
	if !ok {
		t.Fatal(`no user "demo"`)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("demo")); err != nil {
		t.Errorf("demo password_hash does not match %q: %v", "demo", err)
	}
	if want := []config.Mount{{Path: "/", Agent: "embedded", Root: "demo"}}; !reflect.DeepEqual(u.Mounts, want) {
		t.Errorf("demo mounts = %+v, want %+v", u.Mounts, want)
	}
	if _, ok := c.User("nobody"); ok {
		t.Error(`User("nobody") found a user`)
	}
}

// TestEmbeddedDefaultDocumentsEveryOption keeps config.yaml complete: each
// option with a built-in default must appear in it.
func TestEmbeddedDefaultDocumentsEveryOption(t *testing.T) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(strings.NewReader(string(upgate.DefaultConfig))); err != nil {
		t.Fatal(err)
	}
	for _, o := range config.Options() {
		if !v.InConfig(o.Key) {
			t.Errorf("config.yaml lacks key %s", o.Key)
		}
	}
}

// TestREADMEDocumentsEveryOption: README's configuration table names
// every key, spelled out ("`a.b.c`") or as a sibling in a row that starts
// with its parent ("`a.b.x`, `.c`").
func TestREADMEDocumentsEveryOption(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "| `") {
			rows = append(rows, line)
		}
	}
	for _, o := range config.Options() {
		parent, last := o.Key[:strings.LastIndexByte(o.Key, '.')], o.Key[strings.LastIndexByte(o.Key, '.')+1:]
		found := false
		for _, row := range rows {
			if strings.Contains(row, "`"+o.Key+"`") || strings.Contains(row, "`"+parent+".") && strings.Contains(row, "`."+last+"`") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("README's configuration table lacks %s", o.Key)
		}
	}
}

func TestLoadEnvOverride(t *testing.T) {
	t.Setenv("UPGATE_LISTEN_FTP", "127.0.0.1:3121")
	t.Setenv("UPGATE_CONNECTIONS_KEEPALIVE_IDLE", "45s")
	t.Setenv("UPGATE_CONNECTIONS_MAX", "10")
	t.Setenv("UPGATE_FTP_TLS_REQUIRED", "false")
	t.Setenv("UPGATE_CONNECTIONS_PROXY_PROTOCOL_TRUSTED", "10.0.0.0/8,192.168.0.0/16")
	t.Setenv("UPGATE_LISTEN_ADMIN", "") // set but empty: admin off
	t.Setenv("UPGATE_AGENTS_EMBEDDED_ROOT", "/srv/files")
	c, err := config.Load("", upgate.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.FTP != "127.0.0.1:3121" {
		t.Errorf("listen.ftp = %q, want the env value", c.Listen.FTP)
	}
	if c.Connections.Keepalive.Idle != 45*time.Second {
		t.Errorf("connections.keepalive.idle = %v, want 45s", c.Connections.Keepalive.Idle)
	}
	if c.Connections.Max != 10 {
		t.Errorf("connections.max = %d, want 10", c.Connections.Max)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}; !reflect.DeepEqual(c.Connections.ProxyProtocol.Trusted, want) {
		t.Errorf("connections.proxy_protocol.trusted = %v, want %v", c.Connections.ProxyProtocol.Trusted, want)
	}
	if c.Listen.Admin != "" {
		t.Errorf("listen.admin = %q, want empty", c.Listen.Admin)
	}
	if got := c.Agents["embedded"].Root; got != "/srv/files" {
		t.Errorf("agents.embedded.root = %q, want the env value", got)
	}
	if c.Listen.SFTP != "127.0.0.1:2222" {
		t.Errorf("listen.sftp = %q, want the default", c.Listen.SFTP)
	}
}

func TestLoadEnvValidated(t *testing.T) {
	t.Setenv("UPGATE_LISTEN_SFTP", "0.0.0.0:2222")
	_, err := config.Load("", upgate.DefaultConfig, nil)
	want := `config: user "demo" is for the embedded default only and is refused on non-loopback listener listen.sftp "0.0.0.0:2222"`
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %s", err, want)
	}

	t.Setenv("UPGATE_LISTEN_SFTP", "127.0.0.1:2222")
	t.Setenv("UPGATE_CONNECTIONS_MAX", "many")
	if _, err := config.Load("", upgate.DefaultConfig, nil); err == nil || !strings.Contains(err.Error(), "config: connections.max: ") {
		t.Fatalf("Load error = %v, want one naming connections.max", err)
	}
}

func TestLoadFlagOverride(t *testing.T) {
	t.Setenv("UPGATE_LISTEN_FTP", "127.0.0.1:3121")
	t.Setenv("UPGATE_LISTEN_SFTP", "127.0.0.1:3222")
	fs := pflag.NewFlagSet("upgate", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	fs.String("config", "", "config file") // a command flag, not a key
	args := []string{
		"--listen.ftp=127.0.0.1:4121",
		"--connections.idle_timeout=5m",
		"--sftp.host_keys=a,b",
		"--ftp.tls.required=false",
		"--config=ignored.yaml",
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load("", upgate.DefaultConfig, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.FTP != "127.0.0.1:4121" {
		t.Errorf("listen.ftp = %q, want the flag to beat the env", c.Listen.FTP)
	}
	if c.Listen.SFTP != "127.0.0.1:3222" {
		t.Errorf("listen.sftp = %q, want the env value (flag not set)", c.Listen.SFTP)
	}
	if c.Connections.IdleTimeout != 5*time.Minute {
		t.Errorf("connections.idle_timeout = %v, want 5m", c.Connections.IdleTimeout)
	}
	if want := []string{"a", "b"}; !reflect.DeepEqual(c.SFTP.HostKeys, want) {
		t.Errorf("sftp.host_keys = %q, want %q", c.SFTP.HostKeys, want)
	}
	// Unset flags keep the file's values, not the flag defaults.
	if c.Connections.Max != 4096 {
		t.Errorf("connections.max = %d, want the default", c.Connections.Max)
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "upgate.conf") // no .yaml extension
	doc := withUser(alice) + "listen: {ftp: \"127.0.0.1:0\"}\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, upgate.DefaultConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.FTP != "127.0.0.1:0" {
		t.Errorf("listen.ftp = %q", c.Listen.FTP)
	}
	if _, ok := c.User("demo"); ok {
		t.Error("the file must replace the default document, users included")
	}
	if _, ok := c.User("alice"); !ok {
		t.Error("alice missing")
	}

	_, err = config.Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

func TestOptions(t *testing.T) {
	seen := make(map[string]bool)
	for _, o := range config.Options() {
		if seen[o.Key] {
			t.Errorf("duplicate option %s", o.Key)
		}
		seen[o.Key] = true
		if o.Help == "" {
			t.Errorf("option %s has no help", o.Key)
		}
	}
	if got := (config.Option{Key: "connections.keepalive.idle"}).Env(); got != "UPGATE_CONNECTIONS_KEEPALIVE_IDLE" {
		t.Errorf("Env() = %q", got)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	config.RegisterFlags(fs) // panics on an unsupported default type
	if f := fs.Lookup("connections.keepalive.idle"); f == nil || f.DefValue != "30s" {
		t.Errorf("flag connections.keepalive.idle = %+v", f)
	}
}

// TestZeroConfig: the zero Config is valid and means the defaults, every
// listener off and nobody configured; WithDefaults resolves them on a copy.
func TestZeroConfig(t *testing.T) {
	var zero config.Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("the zero Config: %v", err)
	}
	got := zero.WithDefaults()
	if !reflect.DeepEqual(zero, config.Config{}) {
		t.Fatalf("WithDefaults changed its receiver: %+v", zero)
	}
	parsed, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Durations and counts are the defaults a loaded config has...
	want := *parsed
	want.Connections.ProxyProtocol.Trusted = nil
	want.Defender.Allowlist = nil
	if !reflect.DeepEqual(got.Connections, want.Connections) {
		t.Errorf("zero Connections with defaults =\n%+v\nwant\n%+v", got.Connections, want.Connections)
	}
	if got.SFTP.Keepalive != want.SFTP.Keepalive || got.SFTP.HandshakeTimeout != want.SFTP.HandshakeTimeout ||
		got.SFTP.MaxAuthTries != want.SFTP.MaxAuthTries || got.SFTP.MaxChannels != want.SFTP.MaxChannels ||
		got.SFTP.MaxHandles != want.SFTP.MaxHandles || got.SFTP.ExecMaxFiles != want.SFTP.ExecMaxFiles {
		t.Errorf("zero SFTP with defaults = %+v, want the counts and durations of %+v", got.SFTP, want.SFTP)
	}
	if got.FTP.LoginTimeout != 30*time.Second || got.FTP.PassiveTimeout != 15*time.Second {
		t.Errorf("zero FTP with defaults = %+v", got.FTP)
	}
	if got.Defender.MaxFailures != 10 || got.Defender.Window != time.Minute || got.Defender.BanTime != 15*time.Minute {
		t.Errorf("zero Defender with defaults = %+v", got.Defender)
	}
	// ...while strings, switches and lists keep their zero meaning.
	if got.Listen != (config.Listen{}) || got.FTP.PassivePorts != (config.PortRange{}) || got.Defender.Enabled || got.SFTP.HostKeys != nil {
		t.Errorf("WithDefaults filled what zero means off or empty: %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("the zero Config with defaults: %v", err)
	}

	// A key set to 0 in a document means its default too.
	c, err := config.Parse([]byte(`connections: {idle_timeout: 0s, max: 0}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Connections.IdleTimeout != time.Hour || c.Connections.Max != 4096 {
		t.Errorf("idle_timeout: 0s, max: 0 parsed as %v, %d; want the defaults 1h, 4096", c.Connections.IdleTimeout, c.Connections.Max)
	}
}

// TestTypedValues: CIDRs, the passive range and keys are parsed when the
// config is loaded, into the values their users read.
func TestTypedValues(t *testing.T) {
	c, err := config.Parse([]byte(`
connections: {proxy_protocol: {trusted: ["10.1.2.3/8", "::1/128"]}}
defender: {allowlist: ["192.168.7.0/24"]}
ftp: {passive_ports: "2000-2009"}
` + withUser(`name: bob
authorized_keys: ["no-pty,from=\"10.0.0.0/8\" `+pubKey+`"]
mounts: [{path: /, agent: local}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}; !reflect.DeepEqual(c.Connections.ProxyProtocol.Trusted, want) {
		t.Errorf("trusted = %v, want %v (masked)", c.Connections.ProxyProtocol.Trusted, want)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("192.168.7.0/24")}; !reflect.DeepEqual(c.Defender.Allowlist, want) {
		t.Errorf("allowlist = %v, want %v", c.Defender.Allowlist, want)
	}
	r := c.FTP.PassivePorts
	if r != (config.PortRange{First: 2000, Last: 2009}) || r.Len() != 10 || r.String() != "2000-2009" {
		t.Errorf("passive_ports = %+v (len %d, %q)", r, r.Len(), r)
	}
	k := c.Users[0].AuthorizedKeys[0]
	want, err := config.ParseAuthorizedKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.Type() != "ssh-ed25519" || !k.Equal(want) || k.Comment != "alice@host" {
		t.Errorf("key = %s %q, want %s alice@host", k.Type(), k.Comment, want.Type())
	}

	// A Config built in code can hold what a document cannot.
	c.FTP.PassivePorts = config.PortRange{First: 9, Last: 8}
	c.Defender.Allowlist = []netip.Prefix{{}}
	c.Users[0].AuthorizedKeys = []config.AuthorizedKey{{}}
	err = c.Validate()
	for _, want := range []string{`config: ftp.passive_ports: 9-8 is not a port range`, `config: defender.allowlist[0]: not a valid network`, `config: users[0].authorized_keys[0]: no key`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want %q", err, want)
		}
	}
}
