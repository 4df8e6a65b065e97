package hooks_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend/agent/hooks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"**/*.php", "index.php", true},
		{"**/*.php", "app/Models/User.php", true},
		{"**/*.php", "app/Models/User.php.bak", false},
		{"**/*.php", "app/php", false},
		{"composer.json", "composer.json", true},
		{"composer.json", "packages/a/composer.json", false},
		{"*/composer.json", "alice/composer.json", true},
		{"vendor/**", "vendor", true},
		{"vendor/**", "vendor/a/b.php", true},
		{"vendor/**", "vendors/a.php", false},
		{"resources/views/**/*.blade.php", "resources/views/welcome.blade.php", true},
		{"resources/views/**/*.blade.php", "resources/views/layouts/app.blade.php", true},
		{"resources/views/**/*.blade.php", "resources/welcome.blade.php", false},
		{"a/**/b/**/c", "a/b/c", true},
		{"a/**/b/**/c", "a/x/y/b/z/c", true},
		{"a/**/b/**/c", "a/x/y/z/c", false},
		{"**", "anything/at/all", true},
		{"*.php", "app/x.php", false}, // * never crosses a slash
		{"[ab].php", "a.php", true},
		{"[ab].php", "c.php", false},
		{"config/*.php", "config/app.php", true},
		{"[", "[", false}, // malformed: matches nothing
	} {
		if got := hooks.Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	const good = `
hooks:
  - name: opcache-reset
    match: ["**/*.php"]
    exclude: ["vendor/**"]
    on: [write, rename, delete]
    command: ["sh", "-c", "kill -USR2 1"]
    debounce: 500ms
    timeout: 10s
    env: {APP_ENV: local}
  - name: dump-autoload
    match: [composer.json]
    command: [composer, dump-autoload]
`
	hs, err := hooks.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 {
		t.Fatalf("%d hooks", len(hs))
	}
	h := hs[0]
	if h.Name != "opcache-reset" || h.Debounce != 500*time.Millisecond || h.Timeout != 10*time.Second ||
		h.Env["APP_ENV"] != "local" || len(h.On) != 3 || h.On[2] != hooks.Delete || h.Exclude[0] != "vendor/**" {
		t.Errorf("first hook: %+v", h)
	}
	if h := hs[1]; h.Debounce != 0 || h.Timeout != 0 || h.On != nil || strings.Join(h.Command, " ") != "composer dump-autoload" {
		t.Errorf("second hook (defaults are zero, resolved by the runner): %+v", h)
	}
	if hs, err := hooks.Parse(nil); err != nil || hs != nil {
		t.Errorf("empty file: %v %v", hs, err)
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "hooks:\n  - name: a\n    match: [x]\n    command: [true]\n    shell: true\n", "field shell not found"},
		{"unknown top-level key", "hook: []\n", "field hook not found"},
		{"no name", "hooks:\n  - match: [x]\n    command: [true]\n", "hooks[0].name: required"},
		{"bad name", "hooks:\n  - name: a b\n    match: [x]\n    command: [true]\n", `hooks[0] (a b).name: "a b"`},
		{"duplicate name", "hooks:\n  - {name: a, match: [x], command: [true]}\n  - {name: a, match: [y], command: [true]}\n", `hooks[1] (a).name: "a" is also hooks[0].name`},
		{"no match", "hooks:\n  - {name: a, command: [true]}\n", "hooks[0] (a).match: at least one glob"},
		{"absolute glob", "hooks:\n  - {name: a, match: [/x], command: [true]}\n", `hooks[0] (a).match[0]: "/x": absolute`},
		{"bad glob", "hooks:\n  - {name: a, match: [ok, \"x/[a-\"], command: [true]}\n", `hooks[0] (a).match[1]: "x/[a-": syntax error`},
		{"dotdot glob", "hooks:\n  - {name: a, match: [x], exclude: [../x], command: [true]}\n", `hooks[0] (a).exclude[0]`},
		{"bad kind", "hooks:\n  - {name: a, match: [x], on: [write, chmod], command: [true]}\n", `hooks[0] (a).on[1]: "chmod"`},
		{"no command", "hooks:\n  - {name: a, match: [x]}\n", "hooks[0] (a).command: required"},
		{"command string", "hooks:\n  - {name: a, match: [x], command: php artisan view:clear}\n", "cannot unmarshal"},
		{"empty program", "hooks:\n  - {name: a, match: [x], command: [\"\"]}\n", "hooks[0] (a).command[0]"},
		{"reserved env", "hooks:\n  - {name: a, match: [x], command: [true], env: {UPGATE_CHANGED: x}}\n", `hooks[0] (a).env: "UPGATE_CHANGED"`},
		{"bad env", "hooks:\n  - {name: a, match: [x], command: [true], env: {A-B: x}}\n", `hooks[0] (a).env: "A-B"`},
		{"duration without unit", "hooks:\n  - {name: a, match: [x], command: [true], debounce: 300}\n", `hooks[0] (a).debounce: "300": want a duration with a unit`},
		{"negative timeout", "hooks:\n  - {name: a, match: [x], command: [true], timeout: -1s}\n", "hooks[0] (a).timeout: -1s is negative"},
		{"two documents", "hooks: []\n---\nhooks: []\n", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hooks.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "hooks: ") {
				t.Errorf("Parse: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "hooks.yaml")
	if err := os.WriteFile(name, []byte("hooks:\n  - {name: a, match: [x], command: [true], on: [nope]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hooks.Load(name); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "on[0]") {
		t.Errorf("Load of a bad file: %v, want an error naming the file and the key", err)
	}
	if _, err := hooks.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestCheckOutside(t *testing.T) {
	for _, tc := range []struct {
		file, root string
		ok         bool
	}{
		{"/etc/upgate/hooks.yaml", "/var/www/html", true},
		{"/var/www/html-hooks.yaml", "/var/www/html", true},
		{"/var/www/html/hooks.yaml", "/var/www/html", false},
		{"/var/www/html/../html/.hooks.yaml", "/var/www/html/", false},
		{"hooks.yaml", ".", false},
	} {
		if err := hooks.CheckOutside(tc.file, tc.root); (err == nil) != tc.ok {
			t.Errorf("CheckOutside(%q, %q) = %v", tc.file, tc.root, err)
		}
	}
}
