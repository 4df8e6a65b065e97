// Package config defines upgate's configuration and loads it.
//
// Configuration comes from three layers, later ones winning:
//
//  1. a YAML document: the file given to [Load], or else the embedded
//     default (upgate.DefaultConfig, the repository's config.yaml);
//  2. environment variables named UPGATE_ plus the key path upper-cased
//     with dots turned into underscores: UPGATE_LISTEN_FTP,
//     UPGATE_CONNECTIONS_KEEPALIVE_IDLE, UPGATE_AGENTS_EMBEDDED_ROOT;
//  3. command-line flags named after the dotted key (--listen.ftp) that were
//     explicitly set.
//
// Every scalar key listed by [Options] has a built-in default, so a YAML
// document may omit it and the environment and flags can still set it. Keys
// inside agents and users have no defaults: the environment and flags can
// override them only when the YAML document defines them. An environment
// variable that is set but empty counts, so UPGATE_LISTEN_SFTP= turns the
// SFTP listener off. Lists given through the environment or flags are
// comma-separated. Durations are Go durations with a unit ("30s", "1h").
//
// Keys are case-insensitive and stored lower-case; this includes the names
// of agents, which are map keys. An unknown key is an error that names it, so
// typos do not pass silently.
//
// Values are parsed once, here: CIDRs become [netip.Prefix], the passive
// port range a [PortRange], authorized_keys lines [AuthorizedKey]s (each
// an ssh.PublicKey). Whoever reads a Config reads typed values and never
// parses them again.
//
// [Load] and [Parse] return a [Config] that has passed [Config.Validate]:
// every listener address is host:port, no duration or count is negative,
// every mount names a configured agent, and so on. Every error names the
// key and the offending value, and starts with "config: ".
//
// The zero Config is valid: every listener is off, there are no agents and
// no users, the defender is off, and every duration and count is zero,
// which means its default (the [Options] table's: a zero
// Connections.IdleTimeout is 1h, as if the key were left out). Loaded
// configs have their defaults in place already; code that builds a Config
// itself reads it through [Config.WithDefaults], which resolves them on a
// copy.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole upgate configuration. Each field's comment gives the
// YAML key, its unit and default, and what zero or empty means. Every
// duration and count is zero for its default (see the package doc).
type Config struct {
	// Listen holds the addresses the gateway listens on.
	Listen Listen `mapstructure:"listen"`

	// Connections holds TCP and session limits shared by all frontends.
	Connections Connections `mapstructure:"connections"`

	// FTP holds settings for the FTP frontend only.
	FTP FTP `mapstructure:"ftp"`

	// SFTP holds settings for the SFTP frontend only.
	SFTP SFTP `mapstructure:"sftp"`

	// WebDAV holds settings for the WebDAV frontend only.
	WebDAV WebDAV `mapstructure:"webdav"`

	// Agents maps an agent name (key agents.<name>) to where that agent
	// runs. Names are lower-case; see the package doc. No default: the
	// embedded config.yaml defines one in-process agent named "embedded".
	// Empty means no agents, which only works with no users.
	Agents map[string]Agent `mapstructure:"agents"`

	// Users lists the accounts that may log in. No default: the embedded
	// config.yaml defines the loopback-only user "demo". Empty means nobody
	// can log in.
	Users []User `mapstructure:"users"`

	// Admin configures the admin HTTP server (listen.admin).
	Admin Admin `mapstructure:"admin"`

	// Defender bans addresses after repeated failed logins.
	Defender Defender `mapstructure:"defender"`

	// Log configures the process logger.
	Log Log `mapstructure:"log"`

	// CPU configures how much of the machine's CPU the Go runtime uses.
	CPU CPU `mapstructure:"cpu"`
}

// CPU configures the Go runtime's processors (GOMAXPROCS). Read at start
// only: a reload does not change it.
type CPU struct {
	// Adaptive runs as many Go Ps (threads running Go code at once) as
	// sessions are busy (logged in, and working on files within the last
	// second), at least one and at most the CPUs the runtime
	// found (the container's CPU limit, if lower); see internal/procs for
	// why (key cpu.adaptive). False runs them all at all times, the Go
	// default. The GOMAXPROCS environment variable, when set, wins over
	// either. Default true in a loaded config; false in the zero Config.
	Adaptive bool `mapstructure:"adaptive"`

	// AwakeMonitor keeps the Go runtime's system monitor (sysmon) polling
	// every 10 ms while the process is idle, instead of the deep sleep
	// that the first system call of every request after a pause must wake
	// it from; see internal/procs (MonitorPeriod) for the gain and the
	// price, which includes turning some fatal runtime errors into hangs
	// (key cpu.awake_monitor). The runtime reads the setting
	// (GODEBUG=schedtrace) only at start, so `upgate serve` re-executes
	// itself once at start to get it, unless GODEBUG already names
	// schedtrace. Default false.
	AwakeMonitor bool `mapstructure:"awake_monitor"`
}

// Defender bans client addresses that fail to log in too often, across
// FTP and SFTP. The zero Defender is off.
type Defender struct {
	// Enabled turns the defender on (key defender.enabled). Default true
	// in a loaded config; false in the zero Config.
	Enabled bool `mapstructure:"enabled"`

	// MaxFailures failed logins from one address within Window ban it (key
	// defender.max_failures). Default 10. Zero means the default; negative is
	// invalid.
	MaxFailures int `mapstructure:"max_failures"`

	// Window is how far back failures count (key defender.window). Default 1m.
	// Zero means the default; negative is invalid.
	Window time.Duration `mapstructure:"window"`

	// BanTime is how long a ban lasts (key defender.ban_time). Default 15m.
	// Zero means the default; negative is invalid.
	BanTime time.Duration `mapstructure:"ban_time"`

	// Allowlist holds the networks never banned, CIDRs such as
	// "10.0.0.0/8" in YAML (key defender.allowlist), masked. Default
	// empty.
	Allowlist []netip.Prefix `mapstructure:"allowlist"`
}

// Admin configures the admin HTTP server.
type Admin struct {
	// TokenFile names a file holding a bearer token that /metrics and the
	// sessions API require, and the operator page's login form (key
	// admin.token_file). Default empty: no
	// token, which is allowed only while listen.admin is a loopback
	// address; the admin server then also refuses requests whose Host is
	// not a loopback name or address (DNS rebinding).
	TokenFile string `mapstructure:"token_file"`
}

// Listen holds listener addresses, each host:port as accepted by
// [net.Listen] with a numeric port. Port 0 picks a free port. An empty
// host listens on every interface. An empty address turns that listener off.
type Listen struct {
	// FTP is the FTP control-connection address (key listen.ftp).
	// Default "127.0.0.1:2121".
	FTP string `mapstructure:"ftp"`

	// FTPS is the implicit-FTPS address, TLS from the first byte, as old
	// clients expect on port 990 (key listen.ftps). Default empty: off.
	// Needs ftp.tls.cert and ftp.tls.key.
	FTPS string `mapstructure:"ftps"`

	// SFTP is the SSH/SFTP address (key listen.sftp).
	// Default "127.0.0.1:2222".
	SFTP string `mapstructure:"sftp"`

	// WebDAV is the WebDAV address: HTTPS with webdav.tls, plain HTTP
	// only on a loopback address or with webdav.allow_plain_http (key
	// listen.webdav). Default empty: off.
	WebDAV string `mapstructure:"webdav"`

	// Admin is the admin HTTP address: health, metrics and session
	// control (key listen.admin). Default "127.0.0.1:9100".
	Admin string `mapstructure:"admin"`
}

// Connections holds limits and timeouts applied by the gateway to every
// accepted client connection, whatever its protocol.
type Connections struct {
	// Keepalive configures TCP keepalive probes on client connections
	// (key connections.keepalive).
	Keepalive Keepalive `mapstructure:"keepalive"`

	// UserTimeout is TCP_USER_TIMEOUT: how long sent data may stay
	// unacknowledged before the kernel drops the connection (key
	// connections.user_timeout). Default 60s. Zero means the default; negative
	// is invalid.
	UserTimeout time.Duration `mapstructure:"user_timeout"`

	// IdleTimeout closes a session that has had no protocol traffic (commands,
	// NOOP, SSH keepalive replies, data) for this long; a transfer in progress
	// is never idle (key connections.idle_timeout). It is for clients that are
	// alive but silent; dead peers are left to Keepalive and UserTimeout.
	// Default 1h. Zero means the default; negative is invalid.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`

	// Max is the most client connections open at once, over all listeners;
	// further ones are refused (key connections.max). Default 4096. Zero means
	// the default; negative is invalid.
	Max int `mapstructure:"max"`

	// MaxPerIP is the most client connections open at once from one source IP
	// (key connections.max_per_ip). Default 64. Zero means the default;
	// negative is invalid.
	MaxPerIP int `mapstructure:"max_per_ip"`

	// MaxPerUser is the most sessions one user may have open at once; a login
	// beyond it is refused (key connections.max_per_user). Default 64. Zero
	// means the default; negative is invalid.
	MaxPerUser int `mapstructure:"max_per_user"`

	// MaxFilesPerUser is the most files and directories one user may hold open
	// at once over all their sessions (key connections.max_files_per_user); an
	// open beyond it fails with "too many open files" (SFTP FAILURE, FTP 451),
	// and other users are unaffected. Each open file is a stream and a
	// descriptor on the agent. Default 1024: an IDE or lftp mirror holds a
	// few. Zero means the default; negative is invalid.
	MaxFilesPerUser int `mapstructure:"max_files_per_user"`

	// ProgressTimeout aborts a data transfer (an FTP data connection, a
	// WebDAV request body or response) that has moved no byte for this
	// long (key connections.progress_timeout). Default 2m. Zero means the
	// default; negative is invalid.
	ProgressTimeout time.Duration `mapstructure:"progress_timeout"`

	// ProxyProtocol says which peers may send a PROXY protocol header
	// (key connections.proxy_protocol).
	ProxyProtocol ProxyProtocol `mapstructure:"proxy_protocol"`

	// DrainTimeout is how long shutdown waits for sessions to finish before
	// closing them (key connections.drain_timeout). Default 30s. Zero means
	// the default; negative is invalid.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
}

// Keepalive configures TCP keepalive, as [net.KeepAliveConfig] does.
type Keepalive struct {
	// Idle is how long a connection is idle before the first probe (key
	// connections.keepalive.idle). Default 30s. Zero means the default;
	// negative is invalid.
	Idle time.Duration `mapstructure:"idle"`

	// Interval is the time between probes (key
	// connections.keepalive.interval). Default 10s. Zero means the default;
	// negative is invalid.
	Interval time.Duration `mapstructure:"interval"`

	// Count is how many unanswered probes drop the connection (key
	// connections.keepalive.count). Default 3. Zero means the default;
	// negative is invalid.
	Count int `mapstructure:"count"`
}

// ProxyProtocol configures acceptance of PROXY protocol (v1 and v2)
// headers, which carry the real client address through a load balancer.
type ProxyProtocol struct {
	// Trusted lists the networks whose connections may start with a PROXY
	// header, CIDRs such as "10.0.0.0/8" or "::1/128" in YAML (key
	// connections.proxy_protocol.trusted), masked. Default empty: PROXY
	// headers are accepted from nobody.
	Trusted []netip.Prefix `mapstructure:"trusted"`
}

// FTP holds settings for the FTP frontend.
type FTP struct {
	// PassivePorts is the inclusive port range offered for passive data
	// connections, "A-B" with 1 <= A <= B <= 65535 in YAML (key
	// ftp.passive_ports). Default "30000-30099": a logged-in session holds
	// at most one port, so 100 ports outnumber what one client address
	// (connections.max_per_ip, 64) or one user (connections.max_per_user,
	// 32) can hold. Empty (the zero PortRange) lets the OS pick any free
	// port.
	PassivePorts PortRange `mapstructure:"passive_ports"`

	// PassiveTimeout frees a passive port that no transfer command used within
	// this long of the PASV/EPSV that opened it (key ftp.passive_timeout).
	// Default 15s. Zero means the default; negative is invalid.
	PassiveTimeout time.Duration `mapstructure:"passive_timeout"`

	// PassivePromiscuous admits a passive data connection from any address
	// (key ftp.passive_promiscuous). Default false: one from another IP
	// than its control connection's is refused, as vsftpd's
	// pasv_promiscuous=NO does. Set it only when clients' data connections
	// really come from another address than their control connections.
	PassivePromiscuous bool `mapstructure:"passive_promiscuous"`

	// LoginTimeout is how long an FTP control connection may stay without
	// logging in, commands (NOOP included) or not; it then gets "421 Login
	// timeout" and is closed (key ftp.login_timeout). Default 30s, as
	// sftp.handshake_timeout. Zero means the default; negative is invalid.
	LoginTimeout time.Duration `mapstructure:"login_timeout"`

	// PublicHost is the IP address announced in PASV replies, for clients
	// behind NAT (key ftp.public_host). Default empty: the address the
	// client connected to.
	PublicHost string `mapstructure:"public_host"`

	// TLS configures explicit FTPS (AUTH TLS) and implicit FTPS
	// (listen.ftps) (key ftp.tls).
	TLS TLS `mapstructure:"tls"`

	// DisableActiveMode refuses PORT and EPRT (key
	// ftp.disable_active_mode). Default false: active mode is allowed.
	DisableActiveMode bool `mapstructure:"disable_active_mode"`

	// CheckAlloSize makes a STOR that ALLO announced commit only if exactly
	// that many bytes arrived (key ftp.check_allo_size); otherwise it is
	// answered 451 and nothing changes. FTP ends an upload by closing the
	// data connection, so this is the only way to tell a connection that
	// closed early but cleanly from a shorter file, for clients that
	// announce exact sizes (lftp with ftp:use-allo). Off by default, as
	// RFC 959's ALLO only reserves space and vsftpd ignores it.
	CheckAlloSize bool `mapstructure:"check_allo_size"`
}

// TLS is a server certificate for FTPS.
type TLS struct {
	// Cert is the PEM certificate chain file (key ftp.tls.cert).
	// Default empty: FTPS is off. Set together with Key.
	Cert string `mapstructure:"cert"`

	// Key is the PEM private key file (key ftp.tls.key). Default empty.
	// Set together with Cert.
	Key string `mapstructure:"key"`

	// Required refuses login before AUTH TLS (key ftp.tls.required).
	// Default false: TLS is optional. True requires Cert.
	Required bool `mapstructure:"required"`
}

// SFTP holds settings for the SFTP frontend.
type SFTP struct {
	// HostKeys lists the SSH host private key files (key sftp.host_keys).
	// Default: ssh_host_ed25519_key, ssh_host_ecdsa_key and
	// ssh_host_rsa_key under keys/. A missing file is generated on first
	// start and kept; its key type follows its name. Must not be empty
	// while listen.sftp is set, and no file may be inside an embedded
	// agent's root, where a user mounted there could read or replace it.
	HostKeys []string `mapstructure:"host_keys"`

	// MaxChannels is the most channels open at once on one SSH connection (key
	// sftp.max_channels); a client opening more is refused with "resource
	// shortage". Default 16: OpenSSH's sftp and sshj open one, the VS Code
	// extension a few. Zero means the default; negative is invalid.
	MaxChannels int `mapstructure:"max_channels"`

	// ExecMaxFiles is the most file operands one md5sum, sha1sum or sha256sum
	// command may name (key sftp.exec_max_files); each costs an agent call. A
	// command naming more is refused whole. Default 100. Zero means the
	// default; negative is invalid.
	ExecMaxFiles int `mapstructure:"exec_max_files"`

	// MaxHandles is the most files and directories one SFTP session may hold
	// open at once (key sftp.max_handles); an OPEN or OPENDIR beyond it fails
	// with "too many open handles", as OpenSSH's sftp-server does at its
	// limit, and limits@openssh.com reports it. Each open file is a stream and
	// a file descriptor on the agent. Default 256: sshfs, rclone and lftp hold
	// a few at once. Zero means the default; negative is invalid.
	MaxHandles int `mapstructure:"max_handles"`

	// Keepalive configures SSH-level keepalive requests (key
	// sftp.keepalive).
	Keepalive SSHKeepalive `mapstructure:"keepalive"`

	// HandshakeTimeout bounds the SSH handshake and authentication (key
	// sftp.handshake_timeout). Default 30s. Zero means the default; negative
	// is invalid.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`

	// MaxAuthTries is the number of authentication attempts per connection
	// (key sftp.max_auth_tries). Default 6. Zero means the default; negative
	// is invalid.
	MaxAuthTries int `mapstructure:"max_auth_tries"`
}

// WebDAV holds settings for the WebDAV frontend (listen.webdav).
type WebDAV struct {
	// TLS is the HTTPS certificate (key webdav.tls). Without it the
	// listener speaks plain HTTP, which HTTP Basic makes a clear-text
	// password: allowed on a loopback address, elsewhere only with
	// AllowPlainHTTP.
	TLS CertKey `mapstructure:"tls"`

	// AllowPlainHTTP serves plain HTTP on a listen.webdav that is not a
	// loopback address (key webdav.allow_plain_http), for a
	// TLS-terminating proxy in front. Default false: refused, since
	// passwords would cross the network in clear.
	AllowPlainHTTP bool `mapstructure:"allow_plain_http"`

	// HeaderTimeout bounds the TLS handshake and each request's line and
	// headers (key webdav.header_timeout): a client that sends them
	// slower (slowloris) is disconnected. Request bodies are bounded by
	// connections.progress_timeout instead. Default 30s. Zero means the
	// default; negative is invalid.
	HeaderTimeout time.Duration `mapstructure:"header_timeout"`
}

// CertKey is a server certificate.
type CertKey struct {
	// Cert is the PEM certificate chain file. Default empty. Set
	// together with Key.
	Cert string `mapstructure:"cert"`

	// Key is the PEM private key file. Default empty. Set together with
	// Cert.
	Key string `mapstructure:"key"`
}

// SSHKeepalive configures keepalive@openssh.com requests sent to SSH
// clients, which detect dead clients even when TCP keepalive cannot.
type SSHKeepalive struct {
	// Interval is the time between requests (key sftp.keepalive.interval).
	// Default 20s. Zero means the default; negative is invalid.
	Interval time.Duration `mapstructure:"interval"`

	// MaxMissed is how many consecutive unanswered requests close the
	// connection (key sftp.keepalive.max_missed). Default 3. Zero means the
	// default; negative is invalid.
	MaxMissed int `mapstructure:"max_missed"`
}

// Agent says where one agent runs: in-process (Embedded), remote over
// gRPC at an address (Address), or remote in a pod found through the
// Kubernetes API (Kubernetes). Exactly one of Root (embedded), Address and
// Kubernetes is set.
type Agent struct {
	// Embedded runs the agent code in-process over Root (key
	// agents.<name>.embedded). Default false: the agent is remote.
	Embedded bool `mapstructure:"embedded"`

	// Root is the directory an embedded agent serves, created if missing
	// (key agents.<name>.root). Relative paths are relative to the working
	// directory. Required when Embedded; must be empty otherwise.
	Root string `mapstructure:"root"`

	// Address is a remote agent's gRPC target (key agents.<name>.address):
	// host:port, dns:///host:port, unix:/path or another gRPC target
	// scheme. Every "{user}" is replaced by the user's name, so one entry
	// can name a per-user agent. Required unless Embedded or Kubernetes;
	// must be empty otherwise.
	Address string `mapstructure:"address"`

	// Kubernetes finds the agent in the user's pod through the Kubernetes
	// API instead of at an address (key agents.<name>.kubernetes). The
	// zero value means off.
	Kubernetes AgentKubernetes `mapstructure:"kubernetes"`

	// TokenFile is a file holding the bearer token sent to a remote agent
	// (key agents.<name>.token_file). Required for a remote agent unless
	// TLS.Cert authenticates it instead; must be empty when Embedded.
	TokenFile string `mapstructure:"token_file"`

	// TLS secures the connection to a remote agent (key
	// agents.<name>.tls). The zero value means plaintext gRPC. Must be
	// zero when Embedded.
	TLS AgentTLS `mapstructure:"tls"`

	// Hooks is the hook file of an embedded agent (key
	// agents.<name>.hooks; the format of `upgate agent --hooks`), read
	// when the gateway starts; its commands run in the gateway's process
	// as the gateway's user, in Root. Empty means no hooks. Only for an
	// embedded agent (a remote agent reads its own hook file) and never
	// inside Root, where a user could replace it.
	Hooks string `mapstructure:"hooks"`
}

// AgentKubernetes finds a per-user agent in a pod: for user alice, the
// newest pod of alice's namespace that matches alice's selector and whose
// agent container is ready; the gateway dials its pod IP on Port. Setting
// any field turns it on; Namespace and Port are then required.
type AgentKubernetes struct {
	// Namespace is the pods' namespace (key
	// agents.<name>.kubernetes.namespace): a name ("dev") or a template in
	// which "{user}" becomes the login name ("dev-{user}"). It must be a
	// DNS label once filled in.
	Namespace string `mapstructure:"namespace"`

	// Selector is a label selector template (key
	// agents.<name>.kubernetes.selector): "upgate.dev/user={user}" or
	// "upgate.dev/user={user},app=php". "{user}" becomes the login name.
	// Empty matches every pod of the namespace, which only works with a
	// namespace per user: Namespace or Selector must contain "{user}".
	Selector string `mapstructure:"selector"`

	// Container is the agent container's name (key
	// agents.<name>.kubernetes.container), whose readiness decides
	// whether a pod takes uploads. Empty means "upgate-agent", the name
	// "upgate inject" gives it.
	Container string `mapstructure:"container"`

	// Port is the agent's port in the pod (key
	// agents.<name>.kubernetes.port): 1-65535. Required.
	Port int `mapstructure:"port"`

	// Kubeconfig is a kubeconfig file for the API server (key
	// agents.<name>.kubernetes.kubeconfig). Empty means the in-cluster
	// configuration (the pod's service account).
	Kubeconfig string `mapstructure:"kubeconfig"`
}

// Enabled reports whether any Kubernetes setting is present.
func (k AgentKubernetes) Enabled() bool { return k != AgentKubernetes{} }

// AgentTLS configures TLS from the gateway to a remote agent. All fields
// are optional; setting any of them turns TLS on.
type AgentTLS struct {
	// CA is a PEM file of CAs that verify the agent (key
	// agents.<name>.tls.ca). Empty means the system roots.
	CA string `mapstructure:"ca"`

	// Cert is the PEM client certificate presented to the agent (key
	// agents.<name>.tls.cert). Empty means no client certificate. Set
	// together with Key.
	Cert string `mapstructure:"cert"`

	// Key is the PEM private key for Cert (key agents.<name>.tls.key).
	Key string `mapstructure:"key"`

	// ServerName overrides the name verified in the agent's certificate
	// (key agents.<name>.tls.server_name). Empty means the host of
	// Address. Required with Kubernetes, where the agent is dialled by
	// its pod IP.
	ServerName string `mapstructure:"server_name"`
}

// Enabled reports whether any TLS setting is present, that is, whether
// the gateway dials the agent with TLS.
func (t AgentTLS) Enabled() bool { return t != AgentTLS{} }

// User is one account.
type User struct {
	// Name is the login name (key users[i].name): non-empty, unique, and
	// made only of A-Z a-z 0-9 . _ -.
	Name string `mapstructure:"name"`

	// PasswordHash is the bcrypt hash of the password (key
	// users[i].password_hash), as printed by "upgate hash-password".
	// Empty means password login is off; the user then needs a key.
	PasswordHash string `mapstructure:"password_hash"`

	// AuthorizedKeys are public keys, authorized_keys lines in YAML, one
	// key per entry, options allowed (key users[i].authorized_keys). They
	// allow SFTP public-key login. Empty means password login only.
	AuthorizedKeys []AuthorizedKey `mapstructure:"authorized_keys"`

	// Mounts compose the user's tree from agents (key users[i].mounts):
	// each is a path prefix backed by a directory of one agent, the
	// longest matching prefix wins, and directories above mount points
	// that no mount covers are read-only listings of them. At least one.
	Mounts []Mount `mapstructure:"mounts"`
}

// Mount attaches a directory of an agent at a path of a user's tree.
type Mount struct {
	// Path is where the mount appears in the user's tree (key
	// users[i].mounts[j].path): absolute and clean ("/", "/api"), unique
	// per user.
	Path string `mapstructure:"path"`

	// Agent names an entry of Config.Agents (key
	// users[i].mounts[j].agent). Required.
	Agent string `mapstructure:"agent"`

	// Root is the directory inside the agent's tree that the user sees
	// (key users[i].mounts[j].root): relative, slash-separated, clean,
	// with no "..". Empty means the agent's whole tree.
	Root string `mapstructure:"root"`

	// ReadOnly refuses every write through this mount (key
	// users[i].mounts[j].read_only). Default false.
	ReadOnly bool `mapstructure:"read_only"`
}

// Log configures the process logger.
type Log struct {
	// Level is the lowest level logged: "debug", "info", "warn" or
	// "error" (key log.level). Default "info"; empty means "info".
	Level string `mapstructure:"level"`

	// Format is "text" or "json" (key log.format). Default "text";
	// empty means "text".
	Format string `mapstructure:"format"`
}
