package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// envPrefix starts every environment variable that sets a key.
const envPrefix = "UPGATE"

// An Option is one scalar configuration key with a built-in default. The
// options table is the single source for viper defaults, flag definitions
// and the check that config.yaml documents every key.
type Option struct {
	// Key is the dotted key path, such as "connections.keepalive.idle".
	// It is also the flag name.
	Key string

	// Default is the built-in value: a string, bool, int, time.Duration or
	// []string.
	Default any

	// Help is a one-line description, used as the flag's usage text.
	Help string
}

// Env returns the environment variable that sets o.Key, such as
// "UPGATE_CONNECTIONS_KEEPALIVE_IDLE".
func (o Option) Env() string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(o.Key, ".", "_"))
}

// Options returns every key that has a built-in default, in config.yaml
// order. Each call returns a new slice.
func Options() []Option {
	return []Option{
		{"listen.ftp", "127.0.0.1:2121", "FTP listen address host:port; empty turns FTP off"},
		{"listen.ftps", "", "implicit FTPS listen address host:port (TLS from the first byte); empty turns it off"},
		{"listen.sftp", "127.0.0.1:2222", "SFTP listen address host:port; empty turns SFTP off"},
		{"listen.webdav", "", "WebDAV listen address host:port (HTTPS with webdav.tls); empty turns it off"},
		{"listen.admin", "127.0.0.1:9100", "admin HTTP listen address host:port; empty turns it off"},
		{"connections.keepalive.idle", 30 * time.Second, "idle time before the first TCP keepalive probe"},
		{"connections.keepalive.interval", 10 * time.Second, "time between TCP keepalive probes"},
		{"connections.keepalive.count", 3, "unanswered TCP keepalive probes that drop a connection"},
		{"connections.user_timeout", 60 * time.Second, "TCP_USER_TIMEOUT: how long sent data may stay unacknowledged"},
		{"connections.idle_timeout", time.Hour, "close a session idle for this long"},
		{"connections.max", 4096, "most client connections open at once"},
		{"connections.max_per_ip", 64, "most client connections open at once from one IP"},
		{"connections.max_per_user", 64, "most sessions open at once for one user"},
		{"connections.max_files_per_user", 1024, "most files one user may hold open at once over all sessions"},
		{"connections.progress_timeout", 2 * time.Minute, "abort a data transfer that moved no byte for this long"},
		{"connections.proxy_protocol.trusted", []string{}, "CIDRs allowed to send PROXY protocol headers"},
		{"connections.drain_timeout", 30 * time.Second, "how long shutdown waits for sessions to finish"},
		{"ftp.passive_ports", "30000-30099", `FTP passive port range "A-B"; empty lets the OS choose`},
		{"ftp.passive_timeout", 15 * time.Second, "free a passive port no transfer command used within this long"},
		{"ftp.passive_promiscuous", false, "admit passive data connections from another IP than the control connection's"},
		{"ftp.login_timeout", 30 * time.Second, "close an FTP control connection not logged in within this long"},
		{"ftp.public_host", "", "IP announced in PASV replies; empty means the connected address"},
		{"ftp.tls.cert", "", "FTPS certificate PEM file; empty turns FTPS off"},
		{"ftp.tls.key", "", "FTPS private key PEM file"},
		{"ftp.tls.required", false, "refuse FTP login before AUTH TLS"},
		{"ftp.disable_active_mode", false, "refuse PORT and EPRT (active-mode data connections)"},
		{"ftp.check_allo_size", false, "commit a STOR that ALLO announced only if exactly that size arrived"},
		{"sftp.host_keys", []string{"keys/ssh_host_ed25519_key", "keys/ssh_host_ecdsa_key", "keys/ssh_host_rsa_key"}, "SSH host private key files, generated when missing; never inside an agent root"},
		{"sftp.keepalive.interval", 20 * time.Second, "time between SSH keepalive requests"},
		{"sftp.handshake_timeout", 30 * time.Second, "how long the SSH handshake and authentication may take"},
		{"sftp.max_auth_tries", 6, "authentication attempts per SSH connection"},
		{"sftp.max_channels", 16, "channels open at once on one SSH connection"},
		{"sftp.exec_max_files", 100, "file operands one md5sum/sha1sum/sha256sum command may name"},
		{"sftp.max_handles", 256, "files and directories one SFTP session may hold open at once"},
		{"sftp.keepalive.max_missed", 3, "unanswered SSH keepalive requests that close a connection"},
		{"webdav.tls.cert", "", "WebDAV HTTPS certificate PEM file; empty serves plain HTTP (loopback only unless webdav.allow_plain_http)"},
		{"webdav.tls.key", "", "WebDAV HTTPS private key PEM file"},
		{"webdav.allow_plain_http", false, "serve plain HTTP WebDAV on a non-loopback address (behind a TLS-terminating proxy)"},
		{"webdav.header_timeout", 30 * time.Second, "how long a WebDAV client may take for the TLS handshake and each request's headers"},
		{"defender.enabled", true, "ban addresses after repeated failed logins"},
		{"defender.max_failures", 10, "failed logins within defender.window that ban an address"},
		{"defender.window", time.Minute, "how far back failed logins count"},
		{"defender.ban_time", 15 * time.Minute, "how long a ban lasts"},
		{"defender.allowlist", []string{}, "CIDRs that are never banned"},
		{"admin.token_file", "", "file with a bearer token required by /metrics, /api/ and the operator page's login; empty means none"},
		{"cpu.adaptive", true, "run as many Go Ps as sessions are busy (1 up to the CPUs); false = all CPUs always; GOMAXPROCS wins"},
		{"cpu.awake_monitor", false, "keep the Go runtime's monitor polling while idle (GODEBUG=schedtrace, by re-executing at start) so that a request after a pause does not wake it; see README's CPUs for its price; a schedtrace in GODEBUG wins"},
		{"log.level", "info", "log level: debug, info, warn or error"},
		{"log.format", "text", "log format: text or json"},
	}
}

// RegisterFlags defines in fs one flag per [Options] entry, named after
// the key (--listen.ftp) with the option's default and help. [Load] reads
// only the flags that were set, so the flag defaults never override the
// YAML document or the environment. It panics if a flag is already
// defined, as pflag does.
func RegisterFlags(fs *pflag.FlagSet) {
	for _, o := range Options() {
		switch d := o.Default.(type) {
		case string:
			fs.String(o.Key, d, o.Help)
		case bool:
			fs.Bool(o.Key, d, o.Help)
		case int:
			fs.Int(o.Key, d, o.Help)
		case time.Duration:
			fs.Duration(o.Key, d, o.Help)
		case []string:
			fs.StringSlice(o.Key, d, o.Help)
		default:
			panic(fmt.Sprintf("config: option %s has unsupported default type %T", o.Key, d))
		}
	}
}

// Load reads configuration: the YAML document (the file at path if path
// != "", else defaultYAML), then UPGATE_* environment variables
// (UPGATE_LISTEN_FTP, UPGATE_CONNECTIONS_KEEPALIVE_IDLE, ...: the key path
// upper-cased, dots to underscores), then the flags that were explicitly
// set in flags, which may be nil. A flag's name is the dotted key, such as
// --listen.ftp; flags whose name is not an [Options] key (--config, say)
// are ignored, as they belong to the command. Load validates the result.
func Load(path string, defaultYAML []byte, flags *pflag.FlagSet) (*Config, error) {
	doc, source := defaultYAML, "embedded default"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		doc, source = b, path
	}
	v, err := newViper(doc, source)
	if err != nil {
		return nil, err
	}
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AllowEmptyEnv(true)
	v.AutomaticEnv()
	if flags != nil {
		keys := make(map[string]bool)
		for _, o := range Options() {
			keys[o.Key] = true
		}
		flags.Visit(func(f *pflag.Flag) {
			if keys[f.Name] && err == nil {
				err = v.BindPFlag(f.Name, f)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	return decode(v)
}

// Parse is [Load] without the environment and flags: it reads the YAML
// document doc over the built-in defaults and validates the result.
// Parse(nil) yields the defaults with no agents and no users.
func Parse(doc []byte) (*Config, error) {
	v, err := newViper(doc, "document")
	if err != nil {
		return nil, err
	}
	return decode(v)
}

// newViper returns a fresh viper instance holding the defaults and the YAML
// document doc; source names doc in errors.
func newViper(doc []byte, source string) (*viper.Viper, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for _, o := range Options() {
		v.SetDefault(o.Key, o.Default)
	}
	if err := v.ReadConfig(bytes.NewReader(doc)); err != nil {
		// Drop viper's "While parsing config: " wrapper.
		var pe viper.ConfigParseError
		if errors.As(err, &pe) {
			err = pe.Unwrap()
		}
		return nil, fmt.Errorf("config: parse %s: %w", source, err)
	}
	return v, nil
}

// decode turns the merged settings of v into a validated Config with its
// defaults in place. Keys that match no field are errors, and so are values
// that do not parse as their field's type (a CIDR, a port range, a key).
func decode(v *viper.Viper) (*Config, error) {
	var (
		c  Config
		md mapstructure.Metadata
	)
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
			textHook,
		),
		// Environment variables and flags arrive as strings.
		WeaklyTypedInput: true,
		Metadata:         &md,
		Result:           &c,
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var errs []error
	if err := dec.Decode(v.AllSettings()); err != nil {
		errs = flattenDecodeError(err, errs)
	}
	slices.Sort(md.Unused)
	for _, k := range md.Unused {
		errs = append(errs, fmt.Errorf("config: %s: unknown key", keyPath(k)))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// A key set to 0 means its default, as in a Config built in code.
	r := c.WithDefaults()
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// flattenDecodeError appends to errs one "config: key: problem" error per
// field that mapstructure failed to decode.
func flattenDecodeError(err error, errs []error) []error {
	switch e := err.(type) {
	case *mapstructure.DecodeError:
		key := keyPath(e.Name())
		var pe *mapstructure.ParseError
		if errors.As(e, &pe) {
			// mapstructure's own text omits the value.
			return append(errs, fmt.Errorf("config: %s: cannot parse %s as %s: %w", key, quote(pe.Value), pe.Expected.Type(), pe.Err))
		}
		return append(errs, fmt.Errorf("config: %s: %w", key, e.Unwrap()))
	case interface{ Unwrap() []error }:
		for _, e := range e.Unwrap() {
			errs = flattenDecodeError(e, errs)
		}
		return errs
	case interface{ Unwrap() error }:
		// mapstructure's "decoding failed due to the following error(s)".
		return flattenDecodeError(e.Unwrap(), errs)
	default:
		return append(errs, fmt.Errorf("config: %w", err))
	}
}

// quote formats a value for an error message, quoting strings.
func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// keyPath rewrites a mapstructure field name into key syntax: map
// entries become dotted ("agents[web].root" to "agents.web.root") while
// slice indexes stay ("users[0].name").
func keyPath(name string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(name, '[')
		if i < 0 {
			break
		}
		n := strings.IndexByte(name[i:], ']')
		if n < 0 {
			break
		}
		j := i + n
		if inner := name[i+1 : j]; strings.Trim(inner, "0123456789") != "" {
			b.WriteString(name[:i] + "." + inner) // a map key
		} else {
			b.WriteString(name[:j+1]) // a slice index
		}
		name = name[j+1:]
	}
	b.WriteString(name)
	return b.String()
}

// durationHook parses duration strings ("30s") and refuses bare numbers,
// which would otherwise decode as nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	durationType := reflect.TypeFor[time.Duration]()
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		return time.ParseDuration(data.(string))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("%v is not a duration: give a unit, as in \"%vs\"", data, data)
	}
	return data, nil
}
