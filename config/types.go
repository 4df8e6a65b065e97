package config

import (
	"bytes"
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// PortRange is an inclusive range of TCP ports, First to Last, written
// "A-B" in YAML, the environment and flags. The zero PortRange is no
// range: the OS picks any free port.
type PortRange struct {
	First, Last uint16
}

var (
	_ encoding.TextUnmarshaler = (*PortRange)(nil)
	_ encoding.TextMarshaler   = PortRange{}
)

// ParsePortRange parses "A-B" with 1 <= A <= B <= 65535; "" is the zero
// PortRange.
func ParsePortRange(s string) (PortRange, error) {
	if s == "" {
		return PortRange{}, nil
	}
	a, b, found := strings.Cut(s, "-")
	x, errA := strconv.ParseUint(a, 10, 16)
	y, errB := strconv.ParseUint(b, 10, 16)
	r := PortRange{First: uint16(x), Last: uint16(y)}
	if !found || errA != nil || errB != nil || !r.valid() {
		return PortRange{}, fmt.Errorf(`%q is not a port range "A-B" with 1 <= A <= B <= 65535`, s)
	}
	return r, nil
}

// valid reports whether r is the zero PortRange or a range of ports from 1.
func (r PortRange) valid() bool { return r.IsZero() || 1 <= r.First && r.First <= r.Last }

// IsZero reports whether r is the zero PortRange (no range).
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Len is the number of ports in r, 0 for the zero PortRange.
func (r PortRange) Len() int {
	if r.IsZero() || r.Last < r.First {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// String is "A-B", or "" for the zero PortRange.
func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// UnmarshalText parses "A-B" (see ParsePortRange).
func (r *PortRange) UnmarshalText(b []byte) error {
	p, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// MarshalText is String's text.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// AuthorizedKey is one public key of a user, parsed from an authorized_keys
// line ("ssh-ed25519 AAAA... alice@laptop", options allowed). It is an
// ssh.PublicKey; Line keeps the text it came from.
type AuthorizedKey struct {
	ssh.PublicKey
	// Comment is the line's comment ("alice@laptop"), "" if none.
	Comment string
	// Line is the authorized_keys line as configured.
	Line string
}

var (
	_ encoding.TextUnmarshaler = (*AuthorizedKey)(nil)
	_ encoding.TextMarshaler   = AuthorizedKey{}
)

// ParseAuthorizedKey parses one authorized_keys line holding exactly one
// key.
func ParseAuthorizedKey(line string) (AuthorizedKey, error) {
	key, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	switch {
	case err != nil:
		return AuthorizedKey{}, fmt.Errorf("%q: %w", line, err)
	case len(bytes.TrimSpace(rest)) > 0:
		return AuthorizedKey{}, fmt.Errorf("%q holds more than one key; give one key per entry", line)
	}
	return AuthorizedKey{PublicKey: key, Comment: comment, Line: line}, nil
}

// UnmarshalText parses an authorized_keys line (see ParseAuthorizedKey).
func (k *AuthorizedKey) UnmarshalText(b []byte) error {
	p, err := ParseAuthorizedKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// MarshalText is the configured line.
func (k AuthorizedKey) MarshalText() ([]byte, error) { return []byte(k.Line), nil }

// Equal reports whether k and o are the same key, whatever their comments
// and options.
func (k AuthorizedKey) Equal(o ssh.PublicKey) bool {
	if k.PublicKey == nil || o == nil {
		return k.PublicKey == nil && o == nil
	}
	return bytes.Equal(k.Marshal(), o.Marshal())
}

// parsePrefix parses a CIDR ("10.0.0.0/8", "::1/128") into its masked
// prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
	}
	return p.Masked(), nil
}

// textHook decodes strings into the typed values above and netip.Prefix,
// so that a value is parsed once, when the configuration is loaded, and
// its error names the key (the decoder adds it).
func textHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String {
		return data, nil
	}
	s := reflect.ValueOf(data).String()
	switch to {
	case reflect.TypeFor[[]netip.Prefix]():
		// A list from the environment or a flag: "10.0.0.0/8,fd00::/8".
		// (mapstructure's own splitting applies to []string only.)
		if strings.TrimSpace(s) == "" {
			return []string{}, nil
		}
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	case reflect.TypeFor[netip.Prefix]():
		return parsePrefix(s)
	case reflect.TypeFor[PortRange]():
		return ParsePortRange(s)
	case reflect.TypeFor[AuthorizedKey]():
		return ParseAuthorizedKey(s)
	}
	return data, nil
}
