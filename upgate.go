// Package upgate holds what the whole module shares at its root: the
// default configuration, embedded from config.yaml. The code lives in
// subpackages; see config, gateway and backend.
package upgate

import _ "embed"

// DefaultConfig is the repository's config.yaml, the configuration used
// when no file is given: loopback listeners, one in-process agent serving
// ./data, and the user "demo" (password "demo"), which the config package
// refuses on non-loopback listeners. Pass it to config.Load; do not modify
// it.
//
//go:embed config.yaml
var DefaultConfig []byte
