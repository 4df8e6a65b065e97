// Package hooks runs commands after files change under an agent's root:
// reset php-fpm's opcache after a PHP file is saved, clear a framework's
// view cache after a template is saved, run `composer dump-autoload` after
// composer.json changes.
//
// Hooks come from the agent's own hook file (`upgate agent --hooks FILE`,
// see Parse for its format), and from nowhere else: the package knows
// nothing of gRPC, and the agent tells it only which path changed and how
// (Runner.Changed). A gateway can therefore make an agent run exactly the
// commands of that agent's hook file, with changed paths as data, and
// nothing else.
//
// Invariants:
//   - a hook runs only after a change it asked for (Hook.On) to a path its
//     globs match and do not exclude;
//   - changes within a hook's debounce window of each other run it once,
//     with every changed path;
//   - one hook never runs concurrently with itself: changes that arrive
//     while it runs are collected and run it once more afterwards, with
//     their union;
//   - a run that outlives its timeout has its whole process group killed;
//   - a hook's outcome never reaches the change that triggered it: the
//     upload is committed before the hook is even scheduled.
package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Kind is what happened to a path.
type Kind string

// The kinds of change a hook can ask for (Hook.On).
const (
	// Write is an upload committed in place: the atomic upload's temp file
	// was renamed over its target (or an in-place write closed cleanly).
	// Aborted and failed uploads are never reported.
	Write Kind = "write"
	// Rename is the destination of a successful rename.
	Rename Kind = "rename"
	// Delete is a removed file or directory.
	Delete Kind = "delete"
	// Mkdir is a created directory.
	Mkdir Kind = "mkdir"
)

// Kinds lists every Kind, in the order the documentation gives them.
func Kinds() []Kind { return []Kind{Write, Rename, Delete, Mkdir} }

func (k Kind) valid() bool {
	switch k {
	case Write, Rename, Delete, Mkdir:
		return true
	}
	return false
}

// Defaults and bounds.
const (
	// DefaultDebounce is a hook's debounce window when it sets none.
	DefaultDebounce = 300 * time.Millisecond
	// DefaultTimeout is a hook's timeout when it sets none.
	DefaultTimeout = time.Minute
	// MaxPaths is how many distinct changed paths one run lists (on stdin
	// and in Run.Paths); further ones only count (Run.Dropped).
	MaxPaths = 10000
	// MaxEnvBytes bounds UPGATE_CHANGED: the paths that do not fit are on
	// stdin only, and UPGATE_CHANGED_TRUNCATED is "1".
	MaxEnvBytes = 32 << 10
	// OutputTail is how many bytes of a run's output (stdout and stderr
	// together) Run.Output keeps: the last ones.
	OutputTail = 4 << 10
	// maxFileSize bounds a hook file.
	maxFileSize = 1 << 20
)

// Hook is one entry of a hook file. Durations are YAML strings with a
// unit ("300ms", "2m").
type Hook struct {
	// Name identifies the hook in events, logs and metrics: 1 to 64 of
	// A-Z a-z 0-9 . _ -, unique in the file. Required.
	Name string `yaml:"name"`
	// Match lists globs (see Match) of paths relative to the agent root
	// that trigger the hook: "**/*.php", "composer.json". At least one.
	Match []string `yaml:"match"`
	// Exclude lists globs of paths that never trigger it, even when Match
	// matches: "vendor/**". Optional.
	Exclude []string `yaml:"exclude"`
	// On lists the kinds of change that trigger it: write, rename,
	// delete, mkdir. Empty means write and rename.
	On []Kind `yaml:"on"`
	// Command is the program and its arguments, run without a shell
	// (name a shell to get one: ["sh", "-c", "..."]). A name without a
	// slash is looked up in the agent's PATH; a relative one with a slash
	// is relative to the agent root. Required.
	Command []string `yaml:"command"`
	// Env adds variables to the agent's environment for the command.
	// Names must not start with UPGATE_ (those are set by the runner).
	Env map[string]string `yaml:"env"`
	// Debounce is how long the hook waits after the latest matching
	// change before it runs. Zero means DefaultDebounce; negative is
	// refused.
	Debounce time.Duration `yaml:"-"`
	// Timeout is how long one run may take before its process group is
	// killed. Zero means DefaultTimeout; negative is refused.
	Timeout time.Duration `yaml:"-"`
}

func (h *Hook) debounce() time.Duration {
	if h.Debounce == 0 {
		return DefaultDebounce
	}
	return h.Debounce
}

func (h *Hook) timeout() time.Duration {
	if h.Timeout == 0 {
		return DefaultTimeout
	}
	return h.Timeout
}

// wants reports whether the hook asked for changes of kind k.
func (h *Hook) wants(k Kind) bool {
	if len(h.On) == 0 {
		return k == Write || k == Rename
	}
	for _, o := range h.On {
		if o == k {
			return true
		}
	}
	return false
}

// matches reports whether a change of p triggers the hook.
func (h *Hook) matches(p string) bool {
	for _, x := range h.Exclude {
		if Match(x, p) {
			return false
		}
	}
	for _, m := range h.Match {
		if Match(m, p) {
			return true
		}
	}
	return false
}

// file is a hook file's document. Durations are read as strings, so that
// an error can name the key.
type file struct {
	Hooks []rawHook `yaml:"hooks"`
}

type rawHook struct {
	Hook     `yaml:",inline"`
	Debounce string `yaml:"debounce"`
	Timeout  string `yaml:"timeout"`
}

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	validEnv  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Parse reads a hook file:
//
//	hooks:
//	  - name: opcache-reset            # required, unique
//	    match: ["**/*.php"]            # required: globs relative to the agent root
//	    exclude: ["vendor/**"]         # optional
//	    on: [write, rename, delete]    # optional; default [write, rename]
//	    command: ["sh", "-c", "kill -USR2 \"$(cat /run/php-fpm/php-fpm.pid)\""]
//	    debounce: 300ms                # optional; default 300ms
//	    timeout: 30s                   # optional; default 1m
//	    env: {APP_ENV: local}          # optional
//
// Unknown keys are errors, and every error names the hook and the key. An
// empty document has no hooks.
func Parse(data []byte) ([]Hook, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("hooks: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("hooks: more than one YAML document")
	}
	var errs []error
	hooks := make([]Hook, len(f.Hooks))
	for i, r := range f.Hooks {
		hooks[i] = r.Hook
		for _, d := range []struct {
			key, val string
			to       *time.Duration
		}{{"debounce", r.Debounce, &hooks[i].Debounce}, {"timeout", r.Timeout, &hooks[i].Timeout}} {
			if d.val == "" {
				continue
			}
			v, err := time.ParseDuration(d.val)
			if err != nil {
				errs = append(errs, fmt.Errorf("hooks: %s.%s: %q: want a duration with a unit (300ms, 2m)", hookKey(i, r.Name), d.key, d.val))
			}
			*d.to = v
		}
	}
	if err := errors.Join(append(errs, Validate(hooks))...); err != nil {
		return nil, err
	}
	if len(hooks) == 0 {
		return nil, nil
	}
	return hooks, nil
}

func hookKey(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("hooks[%d]", i)
	}
	return fmt.Sprintf("hooks[%d] (%s)", i, name)
}

// Load reads and parses the hook file at name.
func Load(name string) ([]Hook, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("hooks: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("hooks: read %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("hooks: %s is larger than %d bytes", name, maxFileSize)
	}
	hs, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, name)
	}
	return hs, nil
}

// CheckOutside refuses a hook file that lies in root (the agent's root,
// where an upload could replace it and so choose the commands), comparing
// absolute, cleaned paths; symbolic links are not followed.
func CheckOutside(file, root string) error {
	f, errF := filepath.Abs(file)
	r, errR := filepath.Abs(root)
	if errF != nil || errR != nil {
		return fmt.Errorf("hooks: %w", errors.Join(errF, errR))
	}
	if rel, err := filepath.Rel(r, f); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("hooks: %s is inside the agent root %s, where an upload could replace it: keep it outside", file, root)
	}
	return nil
}

// Validate checks hooks as Parse does; errors name the hook and the key.
func Validate(hooks []Hook) error {
	var errs []error
	seen := make(map[string]int)
	for i := range hooks {
		h := &hooks[i]
		key := hookKey(i, h.Name)
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("hooks: %s.%s: %s", key, field, fmt.Sprintf(format, args...)))
		}
		switch first, dup := seen[h.Name]; {
		case h.Name == "":
			bad("name", "required")
		case !validName.MatchString(h.Name):
			bad("name", "%q: use 1 to 64 of A-Z a-z 0-9 . _ -", h.Name)
		case dup:
			bad("name", "%q is also hooks[%d].name", h.Name, first)
		default:
			seen[h.Name] = i
		}
		if len(h.Match) == 0 {
			bad("match", "at least one glob is required")
		}
		for j, g := range h.Match {
			if err := checkPattern(g); err != nil {
				bad(fmt.Sprintf("match[%d]", j), "%q: %v", g, err)
			}
		}
		for j, g := range h.Exclude {
			if err := checkPattern(g); err != nil {
				bad(fmt.Sprintf("exclude[%d]", j), "%q: %v", g, err)
			}
		}
		for j, k := range h.On {
			if !k.valid() {
				bad(fmt.Sprintf("on[%d]", j), "%q: want one of write, rename, delete, mkdir", k)
			}
		}
		switch {
		case len(h.Command) == 0:
			bad("command", "required: the program and its arguments, as a list")
		case h.Command[0] == "":
			bad("command[0]", "the program must not be empty")
		}
		for j, a := range h.Command {
			if strings.IndexByte(a, 0) >= 0 {
				bad(fmt.Sprintf("command[%d]", j), "contains a NUL byte")
			}
		}
		for name, v := range h.Env {
			switch {
			case !validEnv.MatchString(name):
				bad("env", "%q is not a valid variable name", name)
			case strings.HasPrefix(name, "UPGATE_"):
				bad("env", "%q: UPGATE_ variables are set by the agent", name)
			case strings.IndexByte(v, 0) >= 0:
				bad("env", "%s contains a NUL byte", name)
			}
		}
		if h.Debounce < 0 {
			bad("debounce", "%v is negative", h.Debounce)
		}
		if h.Timeout < 0 {
			bad("timeout", "%v is negative", h.Timeout)
		}
	}
	return errors.Join(errs...)
}
