package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"k8s.io/apimachinery/pkg/labels"
)

// dnsLabel is what a user name must be when an agent address template puts
// it into a host name.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// demoUser is the account that config.yaml ships for local trials only.
const demoUser = "demo"

// Validate checks c and returns nil or an error listing every problem
// found, one per line (see [errors.Join]). Each line starts with
// "config: " and names the key and the offending value, as in
// `config: users[1].mounts[0].agent: "web" is not a configured agent`.
//
// The zero Config is valid, and zero durations and counts are (they mean
// their defaults: see [Config.WithDefaults]); negative ones are not.
// Validate only inspects c: it opens no files and resolves no names
// (relative paths, such as host keys against agent roots, are compared
// from the working directory).
func (c *Config) Validate() error {
	var v validator
	v.listen(c)
	v.connections(&c.Connections)
	v.ftp(&c.FTP)
	if c.Listen.FTPS != "" && c.FTP.TLS.Cert == "" {
		v.errorf("listen.ftps", "implicit FTPS on %q needs ftp.tls.cert and ftp.tls.key", c.Listen.FTPS)
	}
	v.sftp(c)
	v.webdav(c)
	v.agents(c.Agents)
	v.users(c)
	v.defender(&c.Defender)
	v.log(&c.Log)
	v.demo(c)
	v.admin(c)
	return errors.Join(v.errs...)
}

// User returns the user called name, pointing into c.Users.
func (c *Config) User(name string) (*User, bool) {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i], true
		}
	}
	return nil, false
}

// validator collects Validate's errors.
type validator struct {
	errs []error
}

// errorf records "config: key: " followed by the formatted problem. The
// format may use %w.
func (v *validator) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
}

// together checks that a TLS section's cert and key are set together.
func (v *validator) together(key, cert, keyFile string) {
	if (cert == "") != (keyFile == "") {
		v.errorf(key, "cert and key must be set together, got cert %q and key %q", cert, keyFile)
	}
}

// positive refuses a negative duration; zero means the default.
func (v *validator) positive(key string, d time.Duration) {
	if d < 0 {
		v.errorf(key, "must be > 0 (or 0 for the default), got %v", d)
	}
}

// positiveInt refuses a negative count; zero means the default.
func (v *validator) positiveInt(key string, n int) {
	if n < 0 {
		v.errorf(key, "must be > 0 (or 0 for the default), got %d", n)
	}
}

// prefixes refuses the zero netip.Prefix, which a Config built in code
// may hold (a loaded one cannot).
func (v *validator) prefixes(key string, ps []netip.Prefix) {
	for i, p := range ps {
		if !p.IsValid() {
			v.errorf(fmt.Sprintf("%s[%d]", key, i), "not a valid network (the zero netip.Prefix)")
		}
	}
}

func (v *validator) listen(c *Config) {
	for _, l := range listeners(c) {
		if l.addr != "" {
			if _, ok := splitHostPort(l.addr); !ok {
				v.errorf(l.key, "%q is not host:port", l.addr)
			}
		}
	}
}

func (v *validator) connections(c *Connections) {
	v.positive("connections.keepalive.idle", c.Keepalive.Idle)
	v.positive("connections.keepalive.interval", c.Keepalive.Interval)
	v.positiveInt("connections.keepalive.count", c.Keepalive.Count)
	v.positive("connections.user_timeout", c.UserTimeout)
	v.positive("connections.idle_timeout", c.IdleTimeout)
	v.positiveInt("connections.max", c.Max)
	v.positiveInt("connections.max_per_ip", c.MaxPerIP)
	v.positiveInt("connections.max_per_user", c.MaxPerUser)
	v.positiveInt("connections.max_files_per_user", c.MaxFilesPerUser)
	v.positive("connections.progress_timeout", c.ProgressTimeout)
	v.positive("connections.drain_timeout", c.DrainTimeout)
	v.prefixes("connections.proxy_protocol.trusted", c.ProxyProtocol.Trusted)
}

func (v *validator) ftp(f *FTP) {
	if p := f.PassivePorts; !p.valid() {
		v.errorf("ftp.passive_ports", `%d-%d is not a port range "A-B" with 1 <= A <= B <= 65535`, p.First, p.Last)
	}
	if h := f.PublicHost; h != "" {
		if _, err := netip.ParseAddr(h); err != nil {
			v.errorf("ftp.public_host", "%q is not an IP address", h)
		}
	}
	v.positive("ftp.passive_timeout", f.PassiveTimeout)
	v.positive("ftp.login_timeout", f.LoginTimeout)
	v.together("ftp.tls", f.TLS.Cert, f.TLS.Key)
	if f.TLS.Required && f.TLS.Cert == "" {
		v.errorf("ftp.tls.required", "needs ftp.tls.cert and ftp.tls.key")
	}
}

func (v *validator) sftp(c *Config) {
	s := &c.SFTP
	v.positive("sftp.handshake_timeout", s.HandshakeTimeout)
	v.positiveInt("sftp.max_auth_tries", s.MaxAuthTries)
	if c.Listen.SFTP != "" && len(s.HostKeys) == 0 {
		v.errorf("sftp.host_keys", "must not be empty while listen.sftp is set")
	}
	for i, k := range s.HostKeys {
		key := fmt.Sprintf("sftp.host_keys[%d]", i)
		if k == "" {
			v.errorf(key, "must not be empty")
			continue
		}
		for _, name := range sortedAgents(c.Agents) {
			if a := c.Agents[name]; a.Embedded && a.Root != "" && within(a.Root, k) {
				v.errorf(key, "host key %q is inside agents.%s.root %q, where a user mounted there could read or replace it: keep host keys outside every agent root", k, name, a.Root)
			}
		}
	}
	v.positiveInt("sftp.max_channels", s.MaxChannels)
	v.positiveInt("sftp.exec_max_files", s.ExecMaxFiles)
	v.positiveInt("sftp.max_handles", s.MaxHandles)
	v.positive("sftp.keepalive.interval", s.Keepalive.Interval)
	v.positiveInt("sftp.keepalive.max_missed", s.Keepalive.MaxMissed)
}

func (v *validator) webdav(c *Config) {
	w := &c.WebDAV
	v.positive("webdav.header_timeout", w.HeaderTimeout)
	v.together("webdav.tls", w.TLS.Cert, w.TLS.Key)
	addr := c.Listen.WebDAV
	if addr == "" || w.TLS.Cert != "" || w.AllowPlainHTTP {
		return
	}
	if host, ok := splitHostPort(addr); ok && !isLoopback(host) {
		v.errorf("listen.webdav", "%q is not a loopback address: set webdav.tls.cert and webdav.tls.key (HTTP Basic sends passwords in clear), or webdav.allow_plain_http: true behind a TLS-terminating proxy", addr)
	}
}

// sortedAgents returns the agent names in order.
func sortedAgents(agents map[string]Agent) []string {
	names := make([]string, 0, len(agents))
	for name := range agents {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// within reports whether file is dir or lies under it, comparing cleaned
// absolute paths (relative ones are taken from the working directory);
// symbolic links are not followed.
func within(dir, file string) bool {
	d, errD := filepath.Abs(dir)
	f, errF := filepath.Abs(file)
	if errD != nil || errF != nil {
		return false
	}
	rel, err := filepath.Rel(d, f)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func (v *validator) agents(agents map[string]Agent) {
	for _, name := range sortedAgents(agents) {
		a := agents[name]
		key := "agents." + name
		if !validName(name, false) {
			v.errorf(key, "%q is not a valid agent name: use only a-z 0-9 _ -", name)
		}
		if a.Embedded {
			if a.Root == "" {
				v.errorf(key+".root", "required for an embedded agent")
			}
			if a.Address != "" {
				v.errorf(key+".address", "must be empty for an embedded agent, got %q", a.Address)
			}
			if a.TokenFile != "" {
				v.errorf(key+".token_file", "must be empty for an embedded agent, got %q", a.TokenFile)
			}
			if a.TLS.Enabled() {
				v.errorf(key+".tls", "must be empty for an embedded agent")
			}
			if a.Hooks != "" && a.Root != "" && within(a.Root, a.Hooks) {
				v.errorf(key+".hooks", "hook file %q is inside agents.%s.root %q, where a user mounted there could replace it: keep it outside", a.Hooks, name, a.Root)
			}
			if a.Kubernetes.Enabled() {
				v.errorf(key+".kubernetes", "must be empty for an embedded agent")
			}
			continue
		}
		if a.Hooks != "" {
			v.errorf(key+".hooks", "only for an embedded agent: a remote agent reads its own hook file (upgate agent --hooks), got %q", a.Hooks)
		}
		if a.Root != "" {
			v.errorf(key+".root", "only for an embedded agent (embedded: true), got %q", a.Root)
		}
		switch {
		case a.Kubernetes.Enabled():
			if a.Address != "" {
				v.errorf(key+".address", "must be empty with kubernetes (the agent is at its pod's IP and kubernetes.port), got %q", a.Address)
			}
			v.kubernetes(key+".kubernetes", a.Kubernetes)
			if a.TLS.Enabled() && a.TLS.ServerName == "" {
				v.errorf(key+".tls.server_name", "required with kubernetes: the agent is dialled by its pod IP, so name the DNS name its certificate holds")
			}
		case a.Address == "":
			v.errorf(key+".address", "required for a remote agent (or set embedded: true, or kubernetes)")
		default:
			if msg := checkAgentAddress(a.Address); msg != "" {
				v.errorf(key+".address", "%q %s", a.Address, msg)
			}
		}
		if a.TokenFile == "" && a.TLS.Cert == "" {
			v.errorf(key+".token_file", "required for a remote agent unless tls.cert is set")
		}
		v.together(key+".tls", a.TLS.Cert, a.TLS.Key)
	}
}

// kubernetes checks an agent's Kubernetes discovery settings.
func (v *validator) kubernetes(key string, k AgentKubernetes) {
	switch ns := strings.ReplaceAll(k.Namespace, userPlaceholder, "user"); {
	case k.Namespace == "":
		v.errorf(key+".namespace", "required: the namespace of the pods, or a template such as \"dev-{user}\"")
	case strings.ContainsAny(ns, "{}"):
		v.errorf(key+".namespace", "%q has an unknown placeholder: only {user} is supported", k.Namespace)
	case !dnsLabel.MatchString(ns):
		v.errorf(key+".namespace", "%q is not a namespace name (a DNS label: a-z, 0-9, -) once {user} is filled in", k.Namespace)
	}
	switch sel := strings.ReplaceAll(k.Selector, userPlaceholder, "user"); {
	case strings.ContainsAny(sel, "{}"):
		v.errorf(key+".selector", "%q has an unknown placeholder: only {user} is supported", k.Selector)
	default:
		if _, err := labels.Parse(sel); err != nil {
			v.errorf(key+".selector", "%q is not a label selector: %w", k.Selector, err)
		}
	}
	if k.Namespace != "" && !strings.Contains(k.Namespace, userPlaceholder) && !strings.Contains(k.Selector, userPlaceholder) {
		v.errorf(key+".selector", "%q does not contain {user} and neither does namespace %q: every user would land in the same pod", k.Selector, k.Namespace)
	}
	if k.Container != "" && !dnsLabel.MatchString(k.Container) {
		v.errorf(key+".container", "%q is not a container name (a DNS label: a-z, 0-9, -)", k.Container)
	}
	if k.Port < 1 || k.Port > 65535 {
		v.errorf(key+".port", "%d is not a port: the agent's --listen port in the pod, 1-65535", k.Port)
	}
}

// userPlaceholder is what agent templates replace by the login name.
const userPlaceholder = "{user}"

// kubernetesUser reports what is wrong with user name in a's Kubernetes
// templates, or "".
func kubernetesUser(k AgentKubernetes, name string) string {
	if strings.Contains(k.Namespace, userPlaceholder) && !dnsLabel.MatchString(strings.ReplaceAll(k.Namespace, userPlaceholder, name)) {
		return fmt.Sprintf("puts the user name in the namespace %q, but %q is not a DNS label (a-z, 0-9, -)", k.Namespace, name)
	}
	if strings.Contains(k.Selector, userPlaceholder) {
		if _, err := labels.Parse(strings.ReplaceAll(k.Selector, userPlaceholder, name)); err != nil {
			return fmt.Sprintf("puts the user name in the selector %q, but %q is not a label value there: %v", k.Selector, name, err)
		}
	}
	return ""
}

func (v *validator) users(c *Config) {
	seen := make(map[string]int)
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		switch first, dup := seen[u.Name]; {
		case u.Name == "":
			v.errorf(key+".name", "must not be empty")
		case !validName(u.Name, true):
			v.errorf(key+".name", "%q is not a valid user name: use only A-Z a-z 0-9 . _ -", u.Name)
		case dup:
			v.errorf(key+".name", "%q is also users[%d].name", u.Name, first)
		default:
			seen[u.Name] = i
		}
		if u.PasswordHash != "" {
			// Cost parses the hash's prefix and length without comparing.
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				v.errorf(key+".password_hash", "not a bcrypt hash: %w", err)
			}
		}
		for j, k := range u.AuthorizedKeys {
			if k.PublicKey == nil {
				v.errorf(fmt.Sprintf("%s.authorized_keys[%d]", key, j), "no key (a zero AuthorizedKey: use ParseAuthorizedKey)")
			}
		}
		if u.PasswordHash == "" && len(u.AuthorizedKeys) == 0 {
			v.errorf(key, "user %q needs a password_hash or at least one authorized_keys entry", u.Name)
		}
		if len(u.Mounts) == 0 {
			v.errorf(key+".mounts", "at least one mount is required")
		}
		paths := make(map[string]int)
		for j, m := range u.Mounts {
			mk := fmt.Sprintf("%s.mounts[%d]", key, j)
			switch first, dup := paths[m.Path]; {
			case !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path:
				v.errorf(mk+".path", "%q must be an absolute, clean path such as \"/\" or \"/api\"", m.Path)
			case dup:
				v.errorf(mk+".path", "%q is also %s.mounts[%d].path", m.Path, key, first)
			default:
				paths[m.Path] = j
			}
			v.mount(mk, m, c.Agents)
			if a, ok := c.Agents[m.Agent]; ok && strings.Contains(a.Address, "{user}") && !dnsLabel.MatchString(u.Name) {
				v.errorf(mk+".agent", "agent %q puts the user name in a DNS name, but %q is not a DNS label (a-z, 0-9, -)", m.Agent, u.Name)
			}
			if a, ok := c.Agents[m.Agent]; ok && a.Kubernetes.Enabled() {
				if msg := kubernetesUser(a.Kubernetes, u.Name); msg != "" {
					v.errorf(mk+".agent", "agent %q %s", m.Agent, msg)
				}
			}
		}
	}
}

func (v *validator) mount(key string, m Mount, agents map[string]Agent) {
	if m.Agent == "" {
		v.errorf(key+".agent", "required")
	} else if _, ok := agents[m.Agent]; !ok {
		if _, ok := agents[strings.ToLower(m.Agent)]; ok {
			v.errorf(key+".agent", "%q is not a configured agent (agent names are lower-case: write %q)", m.Agent, strings.ToLower(m.Agent))
		} else {
			v.errorf(key+".agent", "%q is not a configured agent", m.Agent)
		}
	}
	if r := m.Root; r != "" && (path.IsAbs(r) || path.Clean(r) != r || r == ".." || strings.HasPrefix(r, "../") || strings.Contains(r, `\`)) {
		v.errorf(key+".root", "%q must be a relative, clean, slash-separated path without \"..\"", r)
	}
}

func (v *validator) defender(d *Defender) {
	v.positiveInt("defender.max_failures", d.MaxFailures)
	v.positive("defender.window", d.Window)
	v.positive("defender.ban_time", d.BanTime)
	v.prefixes("defender.allowlist", d.Allowlist)
}

func (v *validator) log(l *Log) {
	switch l.Level {
	case "", "debug", "info", "warn", "error":
	default:
		v.errorf("log.level", "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "", "text", "json":
	default:
		v.errorf("log.format", "%q is not one of text, json", l.Format)
	}
}

// demoHash is the password hash config.yaml ships for demo: bcrypt of
// "demo".
const demoHash = "$2a$10$0dpFMcElNIdnuOWc24Tu0etZdlvxE/kdYthC5JCobH9zWg1lGE9Z6"

// demo refuses the demo user whenever a login listener may be reachable
// from another host. The demo user is any user named demo in any case
// ("Demo", "DEMO"), or with the shipped demo password hash whatever the
// name.
func (v *validator) demo(c *Config) {
	name := ""
	for _, u := range c.Users {
		if strings.EqualFold(u.Name, demoUser) || u.PasswordHash == demoHash {
			name = u.Name
			break
		}
	}
	if name == "" {
		return
	}
	for _, l := range listeners(c) {
		if l.key == "listen.admin" || l.addr == "" {
			continue
		}
		host, ok := splitHostPort(l.addr)
		if !ok {
			continue // already reported by listen
		}
		if !isLoopback(host) {
			v.errs = append(v.errs, fmt.Errorf("config: user %q is for the embedded default only and is refused on non-loopback listener %s %q", name, l.key, l.addr))
		}
	}
}

// admin refuses a tokenless admin API on an address other hosts may
// reach: it lists sessions and kicks them.
func (v *validator) admin(c *Config) {
	addr := c.Listen.Admin
	if addr == "" || c.Admin.TokenFile != "" {
		return
	}
	host, ok := splitHostPort(addr)
	if ok && !isLoopback(host) {
		v.errorf("admin.token_file", "required when listen.admin %q is not a loopback address: without a token anyone who reaches it can list and kick sessions", addr)
	}
}

// listener is a listen.* key and its address.
type listener struct{ key, addr string }

func listeners(c *Config) []listener {
	return []listener{
		{"listen.ftp", c.Listen.FTP},
		{"listen.ftps", c.Listen.FTPS},
		{"listen.sftp", c.Listen.SFTP},
		{"listen.webdav", c.Listen.WebDAV},
		{"listen.admin", c.Listen.Admin},
	}
}

// splitHostPort splits addr as host:port with a numeric port in 0-65535.
func splitHostPort(addr string) (host string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", false
	}
	return host, true
}

// isLoopback reports whether host is "localhost" or a loopback IP. An
// empty host means every interface and is not loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// checkAgentAddress returns "" if addr is a usable remote agent target,
// or else what is wrong with it, to follow the quoted address.
func checkAgentAddress(addr string) string {
	a := strings.ReplaceAll(addr, "{user}", "user")
	if strings.ContainsAny(a, "{}") {
		return "has an unknown placeholder: only {user} is supported"
	}
	if strings.Contains(a, "://") || strings.HasPrefix(a, "unix:") || strings.HasPrefix(a, "unix-abstract:") {
		return "" // a gRPC target with a scheme: dns:///, unix:, passthrough:///, ...
	}
	if host, ok := splitHostPort(a); !ok || host == "" {
		return "is not host:port, dns:///host:port or unix:/path"
	}
	return ""
}

// validName reports whether s is a non-empty run of a-z, 0-9, '_' and '-',
// plus A-Z and '.' when users is true. Agent names exclude those two
// because viper lower-cases keys and splits them at dots.
func validName(s string, users bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '_', r == '-':
		case users && ('A' <= r && r <= 'Z' || r == '.'):
		default:
			return false
		}
	}
	return true
}
