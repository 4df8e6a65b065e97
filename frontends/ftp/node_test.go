package ftp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/nodetest"
)

// The Node tests replay the VS Code "SFTP" extension's FTP mode (liximomo,
// now Natizyskunk) with the library it is built on, npm ftp 0.3.10
// (node-ftp), through interop/node/vscode-ftp.js. CI installs the packages
// with `(cd interop/node && npm ci --ignore-scripts)`; locally the tests
// skip without node or interop/node/node_modules, unless
// UPGATE_REQUIRE_INTEROP=1.

type nodeErr struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
}

type nodeStep struct {
	Op  string   `json:"op"`
	Err *nodeErr `json:"err"`
}

func (s nodeStep) String() string {
	if s.Err == nil {
		return s.Op + ": ok"
	}
	return fmt.Sprintf("%s: %v %s", s.Op, s.Err.Code, s.Err.Message)
}

type nodeListEntry struct {
	Name   string            `json:"name"`
	Type   string            `json:"type"`
	Size   int64             `json:"size"`
	Date   *time.Time        `json:"date"`
	Rights map[string]string `json:"rights"`
}

// vscodeFTPReport is what vscode-ftp.js prints.
type vscodeFTPReport struct {
	OK            bool       `json:"ok"`
	Transcript    []string   `json:"transcript"`
	EnsureDir     []nodeStep `json:"ensureDir"`
	EnsureDirNew  []nodeStep `json:"ensureDirNew"`
	MkdirExisting *nodeErr   `json:"mkdirExisting"`
	Uploads       []struct {
		Round  string     `json:"round"`
		Target string     `json:"target"`
		Steps  []nodeStep `json:"steps"`
		Err    *nodeErr   `json:"err"`
	} `json:"uploads"`
	List          []nodeListEntry `json:"list"`
	ListAfterIdle []nodeListEntry `json:"listAfterIdle"`
	Rename        any             `json:"rename"`
	Delete        any             `json:"delete"`
	Errors        []string        `json:"errors"`
}

// mkdSteps keeps the MKD steps of a log, as "MKD path: code".
func mkdSteps(t *testing.T, log []nodeStep) []string {
	t.Helper()
	var out []string
	for _, s := range log {
		if !strings.HasPrefix(s.Op, "MKD ") {
			continue
		}
		if s.Err == nil {
			out = append(out, s.Op+": ok")
			continue
		}
		if strings.Contains(strings.ToLower(s.Err.Message), "file exists") {
			t.Errorf("%s: a missing parent answered %q, which the extension takes for success", s.Op, s.Err.Message)
		}
		out = append(out, fmt.Sprintf("%s: %v", s.Op, s.Err.Code))
	}
	return out
}

// TestNodeVSCodeFTP replays the extension over FTP: login (FEAT, TYPE I),
// the up-front PASV of its "passive" option, ensureDir with recursion,
// uploads with a temp name (STOR target.new, MFMT, DELE, RNFR/RNTO) onto a
// missing and an existing target and straight onto the target, each
// followed by SITE CHMOD; MKD of an existing directory ("file exists"),
// LIST parsed by node-ftp with dotfiles, RNFR/RNTO, DELE, and NOOP
// keepalives while idle. It checks every file on disk.
func TestNodeVSCodeFTP(t *testing.T) {
	node, script := nodetest.Script(t, "vscode-ftp.js")
	e := start(t, nil)

	type version struct {
		data  []byte
		mtime time.Time
		mode  os.FileMode
	}
	local := t.TempDir()
	base := time.Date(2024, 3, 5, 10, 20, 30, 0, time.UTC)
	final := make(map[string]version)
	listed := make(map[string]version) // at the first LIST, before rename and delete
	rounds := []struct {
		dir   string
		mode  os.FileMode // what the script's SITE CHMOD sets in that round
		files map[string]int
	}{
		{"1", 0o640, map[string]int{"index.php": 3000, ".htaccess": 120, "with space.txt": 50, "old.txt": 10, "junk.txt": 5, "big.bin": 1<<20 + 7, "empty.txt": 0}},
		{"2", 0o644, map[string]int{"index.php": 3100, "big.bin": 200_003}},
		{"3", 0o644, map[string]int{"readme.md": 500, ".htaccess": 130}},
	}
	seq := 0
	for ri, r := range rounds {
		for name, size := range r.files {
			seq++
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*7 + seq*13 + ri)
			}
			mt := base.Add(time.Duration(ri)*24*time.Hour + time.Duration(seq)*time.Second)
			p := filepath.Join(local, r.dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, mt, mt); err != nil {
				t.Fatal(err)
			}
			final[name] = version{data, mt, r.mode}
			listed[name] = final[name]
		}
	}
	final["renamed.txt"] = final["old.txt"]
	delete(final, "old.txt")
	delete(final, "junk.txt")

	var rep vscodeFTPReport
	nodetest.Run(t, node, script, []string{"TZ=UTC", "VSCODE_FTP_KEEPALIVE_MS=200", "VSCODE_FTP_IDLE_MS=1000"}, &rep,
		e.Addr, "alice", gwtest.Users["alice"], local)
	if !rep.OK {
		t.Fatalf("script failed: %q\n%s", rep.Errors, strings.Join(rep.Transcript, "\n"))
	}
	var exchange []string // commands and replies, without the parser's noise
	for _, l := range rep.Transcript {
		if strings.HasPrefix(l, "[connection] > ") || strings.HasPrefix(l, "[connection] < ") {
			exchange = append(exchange, strings.TrimPrefix(l, "[connection] "))
		}
	}
	transcript := strings.Join(exchange, "\n")
	if testing.Verbose() {
		t.Logf("commands and replies:\n%s", transcript)
	}

	// What node-ftp sent: FEAT and TYPE I at login, PASV only, MFMT, SITE
	// CHMOD, and NOOPs while idle.
	// node-ftp logs commands as "> 'CMD ...'", its NOOPs as "> NOOP".
	count := func(cmd string) int {
		return strings.Count(transcript, "> '"+cmd) + strings.Count(transcript, "> "+cmd)
	}
	for _, cmd := range []string{"FEAT", "TYPE I", "PASV", "MFMT ", "SITE CHMOD ", "NOOP"} {
		if count(cmd) == 0 {
			t.Errorf("the client never sent %s", cmd)
		}
	}
	if n := count("EPSV"); n > 0 {
		t.Errorf("node-ftp sent EPSV %d times", n)
	}
	if n := count("NOOP"); n < 3 {
		t.Errorf("%d NOOPs in a 1 s idle period with a 200 ms keepalive, want >= 3", n)
	}
	if len(rep.ListAfterIdle) == 0 {
		t.Error("LIST after the idle period returned nothing")
	}

	// ensureDir /vscode/a/b/c with nothing there: 550 (not "file exists")
	// up to /vscode, then back down; the same for /vscode/x/y later.
	want := []string{
		"MKD /vscode/a/b/c: 550", "MKD /vscode/a/b: 550", "MKD /vscode/a: 550", "MKD /vscode: ok",
		"MKD /vscode/a: ok", "MKD /vscode/a/b: ok", "MKD /vscode/a/b/c: ok",
	}
	if got := mkdSteps(t, rep.EnsureDir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ensureDir %s:\n%s\nwant:\n%s", "/vscode/a/b/c", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	want = []string{"MKD /vscode/x/y: 550", "MKD /vscode/x: ok", "MKD /vscode/x/y: ok"}
	if got := mkdSteps(t, rep.EnsureDirNew); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ensureDir %s:\n%s\nwant:\n%s", "/vscode/x/y", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fi, err := os.Stat(filepath.Join(e.UserDir("alice"), "vscode", "x", "y")); err != nil || !fi.IsDir() {
		t.Errorf("/vscode/x/y not created: %v", err)
	}

	// MKD of an existing directory: 550 with "file exists" in the text.
	if m := rep.MkdirExisting; m == nil || fmt.Sprint(m.Code) != "550" || !strings.Contains(strings.ToLower(m.Message), "file exists") {
		t.Errorf("MKD of an existing directory: %+v; the extension wants 550 containing \"file exists\"", m)
	} else {
		t.Logf("MKD of an existing directory: %v %s", m.Code, m.Message)
	}

	// Every upload went through; only the DELE of a missing target may fail.
	if len(rep.Uploads) != 11 {
		t.Errorf("%d uploads, want 11", len(rep.Uploads))
	}
	for _, u := range rep.Uploads {
		var steps []string
		for _, s := range u.Steps {
			steps = append(steps, s.String())
			if s.Err != nil && !strings.HasPrefix(s.Op, "DELE ") {
				t.Errorf("round %s %s: %s", u.Round, u.Target, s)
			}
		}
		if u.Err != nil {
			t.Errorf("round %s %s failed: %+v\n%s", u.Round, u.Target, u.Err, strings.Join(steps, "\n"))
		}
	}
	if rep.Rename != "ok" || rep.Delete != "ok" {
		t.Errorf("rename: %v, delete: %v", rep.Rename, rep.Delete)
	}

	// LIST as node-ftp parses it: every file, dotfiles included, with its
	// size, permissions and day; nothing else.
	checkList := func(what string, entries []nodeListEntry, want map[string]version) {
		t.Helper()
		var names, wantNames []string
		for _, le := range entries {
			names = append(names, le.Name)
			v, ok := want[le.Name]
			if !ok {
				continue
			}
			rights := le.Rights["user"] + "|" + le.Rights["group"] + "|" + le.Rights["other"]
			ls := v.mode.Perm().String() // -rw-r-----
			wantRights := strings.Join([]string{
				strings.ReplaceAll(ls[1:4], "-", ""), strings.ReplaceAll(ls[4:7], "-", ""), strings.ReplaceAll(ls[7:10], "-", ""),
			}, "|")
			if le.Type != "-" || le.Size != int64(len(v.data)) || rights != wantRights {
				t.Errorf("%s: %s: type %q size %d rights %s; want -, %d, %s", what, le.Name, le.Type, le.Size, rights, len(v.data), wantRights)
			}
			if le.Date == nil || le.Date.UTC().Format(time.DateOnly) != v.mtime.Format(time.DateOnly) {
				t.Errorf("%s: %s: date %v, want the day %s", what, le.Name, le.Date, v.mtime.Format(time.DateOnly))
			}
		}
		for name := range want {
			wantNames = append(wantNames, name)
		}
		sort.Strings(names)
		sort.Strings(wantNames)
		if strings.Join(names, "|") != strings.Join(wantNames, "|") {
			t.Errorf("%s lists %q, want %q", what, names, wantNames)
		}
	}
	checkList("LIST", rep.List, listed)
	checkList("LIST after rename, delete and idle", rep.ListAfterIdle, final)

	// On disk: final content, mtime to the second, mode as chmodded, no
	// .new and no upload temp files.
	dir := filepath.Join(e.UserDir("alice"), "vscode", "a", "b", "c")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names, wantNames []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	for name := range final {
		wantNames = append(wantNames, name)
	}
	sort.Strings(wantNames)
	if strings.Join(names, "|") != strings.Join(wantNames, "|") {
		t.Errorf("directory holds %q, want %q", names, wantNames)
	}
	for name, v := range final {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if nodetest.Sum(b) != nodetest.Sum(v.data) {
			t.Errorf("%s: %d bytes, sha256 %s; want %d bytes, %s", name, len(b), nodetest.Sum(b)[:12], len(v.data), nodetest.Sum(v.data)[:12])
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Truncate(time.Second).Equal(v.mtime) {
			t.Errorf("%s: mtime %s, want %s", name, fi.ModTime().UTC(), v.mtime)
		}
		if fi.Mode().Perm() != v.mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), v.mode)
		}
	}
	e.AgentIdle(t)
}
