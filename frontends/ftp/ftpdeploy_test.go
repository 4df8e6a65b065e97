package ftp_test

import (
	"bytes"
	"crypto/rand"
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

// contents is scanTree's map of dir less the paths drop names (with all
// below them) and the mtimes: what the action keeps of a tree.
func contents(t *testing.T, dir string, drop ...string) map[string]treeEntry {
	t.Helper()
	out := scanTree(t, dir)
	for p, e := range out {
		if slices.ContainsFunc(drop, func(d string) bool { return p == d || strings.HasPrefix(p, d+"/") }) {
			delete(out, p)
			continue
		}
		e.mtime = 0
		out[p] = e
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
	write := func(rel string, data []byte) { writeTreeFile(t, local, rel, data) }
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
		want := contents(t, local, ".git", ".ftp-deploy-sync-state.json")
		got := contents(t, server, ".ftp-deploy-sync-state.json")
		if !maps.Equal(got, want) {
			t.Errorf("%s: the server's tree differs from the local one:\nserver %v\nlocal  %v", round, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
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
