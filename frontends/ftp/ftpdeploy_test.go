package ftp_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/nodetest"
)

// ftpDeployReport is what interop/node/ftp-deploy.js prints.
type ftpDeployReport struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// treeSums maps each file under dir (slash paths relative to it) to its
// sha256, and each directory to "dir", skipping the names skip says.
func treeSums(t *testing.T, dir string, skip func(rel string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(s[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFTPDeployAction deploys a site with @samkirkland/ftp-deploy, the
// library behind the "FTP Deploy" GitHub Action, as a CI job deploys to a
// dev container: a first full upload, then a second run that uploads
// only what changed, removes a directory that went (DELE of its files
// found by MLSD, then RMD) and makes new ones, and a third with
// dangerous-clean-slate (the server directory emptied and uploaded
// again). After each, the server's directory holds exactly the local
// tree (content by sha256), less the excluded .git, and the action's
// state file (which the clean-slate run also leaves in the local tree).
func TestFTPDeployAction(t *testing.T) {
	node, script := nodetest.Script(t, "ftp-deploy.js")
	e := start(t, nil)
	host, port, err := net.SplitHostPort(e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	write := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(local, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 1<<20+3)
	_, _ = rand.Read(big)
	write("index.html", []byte("<h1>one</h1>\n"))
	write("css/site.css", []byte("body { margin: 0 }\n"))
	write("img/big.bin", big)
	write("old/a.txt", []byte("old a\n"))
	write("old/deeper/b.txt", []byte("old b\n"))
	write("with space/é.txt", []byte("accents\n"))
	write(".git/config", []byte("[core]\n")) // excluded by the action's defaults

	server := filepath.Join(e.UserDir("alice"), "www")
	deploy := func(round string, args ...string) {
		t.Helper()
		var rep ftpDeployReport
		nodetest.Run(t, node, script, nil, &rep, append([]string{host, port, "alice", gwtest.Users["alice"], local, "www"}, args...)...)
		if !rep.OK {
			t.Fatalf("%s: the deploy failed: %s", round, rep.Error)
		}
		want := treeSums(t, local, func(rel string) bool { return rel == ".git" || rel == ".ftp-deploy-sync-state.json" })
		got := treeSums(t, server, func(rel string) bool { return rel == ".ftp-deploy-sync-state.json" })
		if !maps.Equal(got, want) {
			t.Errorf("%s: the server's tree differs from the local one:\nserver %v\nlocal  %v", round, entries(got), entries(want))
		}
		if st, err := os.ReadFile(filepath.Join(server, ".ftp-deploy-sync-state.json")); err != nil || !bytes.Contains(st, []byte(`"index.html"`)) {
			t.Errorf("%s: state file: %q, %v", round, st, err)
		}
		e.AgentIdle(t)
		if left := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(left) > 0 {
			t.Errorf("%s: temp files left: %q", round, left)
		}
	}
	deploy("first")

	write("index.html", []byte("<h1>two</h1>\n"))
	if err := os.RemoveAll(filepath.Join(local, "old")); err != nil {
		t.Fatal(err)
	}
	write("js/app/main.js", []byte("main()\n"))
	deploy("second")

	write("css/site.css", []byte("body { margin: 1em }\n"))
	deploy("clean slate", "clean")
}

// entries lists m's entries as "key=value", sorted.
func entries(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, " ")
}
