package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestProtocolsSeeOneAnother opens one user's sessions of every protocol
// side by side (an SFTP session, two FTP sessions, WebDAV over HTTP), has
// them take turns at seeded random changes of one small tree (uploads,
// appends, renames, removals, directories, copies, times, modes, and an
// SFTP upload left open across the others' changes, as a slow save), and
// after each change has a session of a protocol drawn at random look at a
// path. The agent's disk is the oracle, with no model of what should
// happen:
//
//   - what a session reports of a path (missing or not, file or
//     directory, size, mtime to the second, content, a directory's names)
//     is what the disk holds then: no session sees the tree as it was
//     before another session's change, whatever it listed or opened
//     before;
//   - a change that succeeded is on the disk (an upload's bytes, a
//     rename's both ends, a removal, a directory, a time, a mode);
//   - a change that failed changed nothing on the disk (but below a
//     collection a WebDAV DELETE removed what it could from, as rm -r
//     does and RFC 4918 9.6.1 has it, or a COPY or MOVE was to replace
//     and could not remove whole);
//   - no upload's temp file, and no file set aside, is left on the disk
//     (but the temp file of the upload left open);
//   - an upload left open shows nothing to the others until it ends;
//     one that ended well is on the disk (where its directory is now),
//     and one whose close failed (its directory removed meanwhile) is
//     nowhere.
//
// Quick seeds run with every go test; CROSS_RANDOM=A-B (or N, for 1..N)
// runs those instead, CROSS_RANDOM_STEPS the changes per seed (default
// 40); CROSS_RANDOM_VERBOSE=1 logs every change.
func TestProtocolsSeeOneAnother(t *testing.T) {
	first, last := uint64(1), uint64(6)
	if testing.Short() {
		last = 2
	}
	if spec := os.Getenv("CROSS_RANDOM"); spec != "" {
		a, b, found := strings.Cut(spec, "-")
		x, err1 := strconv.ParseUint(a, 10, 64)
		y, err2 := x, error(nil)
		if found {
			y, err2 = strconv.ParseUint(b, 10, 64)
		} else {
			x = 1
		}
		if err1 != nil || err2 != nil || x == 0 || y < x {
			t.Fatalf("CROSS_RANDOM=%q: want N or A-B", spec)
		}
		first, last = x, y
	}
	steps := 40
	if s := os.Getenv("CROSS_RANDOM_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CROSS_RANDOM_STEPS=%q", s)
		}
		steps = n
	}

	listen := func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0", WebDAV: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = config.PortRange{}
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
	}
	run := func(t *testing.T, e *gwtest.Env, owner int) {
		x := dialCross(t, e.Srv.FTPAddr.String(), e.Srv.SFTPAddr.String(), e.Srv.Addr("webdav").String(), e.UserDir("alice"))
		x.verbose = os.Getenv("CROSS_RANDOM_VERBOSE") == "1"
		x.owner = owner
		deadline := time.Now().Add(5 * time.Minute)
		for seed := first; seed <= last; seed++ {
			if time.Now().After(deadline) {
				t.Logf("stopped after seed %d: the 5-minute budget is spent", seed-1)
				break
			}
			x.runSeed(t, seed, steps)
		}
		keys := slices.Sorted(maps.Keys(x.tally))
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%d", k, x.tally[k])
		}
		t.Logf("seeds %d-%d, %d changes each:%s", first, last, steps, b.String())
	}
	t.Run("embedded", func(t *testing.T) { run(t, gwtest.Start(t, listen), 0) })
	// The agent as deployments run it: a process of its own, not root,
	// so that the kernel checks its permissions (a mode set by one
	// protocol refuses another's change).
	t.Run("agent-process", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("an agent process of another user needs root")
		}
		if testing.Short() {
			t.Skip("builds upgate")
		}
		bin, remove, err := agenttest.BuildUpgate()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(remove)
		run(t, gwtest.StartAgentProcess(t, bin, listen), agenttest.NonRootUID)
	})
}

// The protocols a step is made or observed through.
const (
	viaSFTP = "sftp"
	viaFTP  = "ftp"
	viaDAV  = "webdav"
)

var crossVia = []string{viaSFTP, viaFTP, viaDAV}

// crossSessions are one user's open sessions, and where the disk holds
// the user's files.
type crossSessions struct {
	sftp *sftp.Client
	ftp  *ftp.ServerConn
	site *textproto.Conn // a second FTP session, for SITE CHMOD
	dav  *http.Client
	url  string // the WebDAV root
	disk string

	// tally counts the changes that succeeded and failed, by protocol
	// and kind, and the looks, by protocol.
	tally   map[string]int
	verbose bool // CROSS_RANDOM_VERBOSE=1: log every change
	owner   int  // the agent's user, who owns the seeds' trees; 0 for root

	// An SFTP upload left open across changes ("begin" to "end"), as an
	// editor's slow save: others act meanwhile.
	up     *sftp.File
	upPath string // where it was opened, relative to the seed
	upRest string // what "end" writes before it closes
	upAll  string // the whole content, unique in the seed
	// upMoved: a change by another session took the upload's directory
	// (or one above it) away or moved it.
	upMoved bool
	ended   string // the content of the last upload "end" closed

	temps []string // the upgate names the last snapshot found
}

func dialCross(t *testing.T, ftpAddr, sftpAddr, davAddr, disk string) *crossSessions {
	t.Helper()
	tr := &http.Transport{} // its own, so that its kept connections end with the test
	t.Cleanup(tr.CloseIdleConnections)
	x := &crossSessions{disk: disk, url: "http://" + davAddr, dav: &http.Client{Transport: tr, Timeout: 30 * time.Second}, tally: map[string]int{}}
	fc, err := ftp.Dial(ftpAddr, ftp.DialWithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fc.Quit() })
	if err := fc.Login("alice", gwtest.Users["alice"]); err != nil {
		t.Fatal(err)
	}
	x.ftp = fc

	nc, err := net.DialTimeout("tcp", ftpAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	x.site = textproto.NewConn(nc)
	t.Cleanup(func() { x.site.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Minute))
	for _, c := range []struct {
		line string
		code int
	}{{"", 220}, {"USER alice", 331}, {"PASS " + gwtest.Users["alice"], 230}} {
		if c.line != "" {
			if err := x.site.PrintfLine("%s", c.line); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := x.site.ReadResponse(c.code); err != nil {
			t.Fatalf("FTP %q: %v", c.line, err)
		}
	}

	sc, err := ssh.Dial("tcp", sftpAddr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.Password(gwtest.Users["alice"])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	x.sftp, err = sftp.NewClient(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.sftp.Close() })
	return x
}

// crossStep is one change, made through one protocol.
type crossStep struct {
	kind, via string
	path, to  string
	data      string
	mode      os.FileMode
	mtime     time.Time
}

func (s crossStep) String() string {
	switch s.kind {
	case "put", "append", "begin":
		return fmt.Sprintf("%s %s %s %q", s.via, s.kind, s.path, s.data)
	case "end":
		return fmt.Sprintf("%s end of the upload", s.via)
	case "rename", "copy":
		return fmt.Sprintf("%s %s %s -> %s", s.via, s.kind, s.path, s.to)
	case "chmod":
		return fmt.Sprintf("%s chmod %s %04o", s.via, s.path, s.mode)
	case "chtimes":
		return fmt.Sprintf("%s chtimes %s %d", s.via, s.path, s.mtime.Unix())
	}
	return fmt.Sprintf("%s %s %s", s.via, s.kind, s.path)
}

// The tree a seed works in: these names, below the seed's directory.
var (
	crossPaths = []string{"a", "b", "d", "d/e", "d/f", "x", "x/y"}
	crossModes = []os.FileMode{0o644, 0o600, 0o755, 0o444, 0o700}
	crossKinds = []struct {
		kind   string
		weight int
	}{{"put", 8}, {"append", 2}, {"rename", 4}, {"remove", 3}, {"mkdir", 3}, {"rmdir", 2}, {"copy", 2}, {"chtimes", 2}, {"chmod", 2}, {"upload", 3}}
)

func drawCross(rng *rand.Rand, uploading bool) crossStep {
	total := 0
	for _, k := range crossKinds {
		total += k.weight
	}
	n := rng.IntN(total)
	var s crossStep
	for _, k := range crossKinds {
		if n < k.weight {
			s.kind = k.kind
			break
		}
		n -= k.weight
	}
	s.via = crossVia[rng.IntN(len(crossVia))]
	s.path = crossPaths[rng.IntN(len(crossPaths))]
	s.to = crossPaths[rng.IntN(len(crossPaths))]
	s.data = strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(12))
	s.mode = crossModes[rng.IntN(len(crossModes))]
	s.mtime = time.Unix(1_500_000_000+int64(rng.IntN(100_000_000)), 0)
	switch {
	case s.kind == "append" && s.via == viaDAV: // WebDAV has no append
		s.via = viaSFTP
	case s.kind == "copy": // only WebDAV copies on the server
		s.via = viaDAV
	case s.kind == "chmod" && s.via == viaDAV: // nor does it set modes
		s.via = viaFTP
	}
	switch {
	case s.kind == "upload" && uploading:
		s.kind, s.via = "end", viaSFTP // the open upload's end
	case s.kind == "upload":
		s.kind, s.via = "begin", viaSFTP
	case uploading && s.via == viaSFTP:
		// The SFTP session holds its upload: the others act.
		s.via = viaFTP
	}
	return s
}

func (x *crossSessions) runSeed(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0xc2055))
	base := fmt.Sprintf("s%d", seed)
	// The seed's tree starts with two directories and a file in each.
	for _, d := range []string{"", "d", "x"} {
		if err := os.MkdirAll(filepath.Join(x.disk, base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a", "d/e", "x/y"} {
		if err := os.WriteFile(filepath.Join(x.disk, base, f), []byte("seed "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if x.owner != 0 {
		for _, p := range []string{"", "d", "x", "a", "d/e", "x/y"} {
			if err := os.Lchown(filepath.Join(x.disk, base, p), x.owner, x.owner); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func() { // an upload left open ends with its seed
		if x.up != nil {
			x.up.Close()
			x.up = nil
		}
	}()
	var done []string
	failf := func(format string, args ...any) {
		t.Helper()
		from := max(0, len(done)-12)
		t.Errorf("seed %d, after:\n\t%s\n%s", seed, strings.Join(done[from:], "\n\t"), fmt.Sprintf(format, args...))
	}
	for range steps {
		s := drawCross(rng, x.up != nil)
		if s.kind == "begin" {
			s.data = fmt.Sprintf("upload %d/%d ", seed, len(done))
		}
		before := x.snapshot(t, base)
		err := x.apply(base, s)
		after := x.snapshot(t, base)
		line := s.String()
		if err != nil {
			line += " (failed: " + strings.ReplaceAll(err.Error(), "\n", " ") + ")"
		}
		done = append(done, line)
		x.tally[s.via+" "+s.kind+map[bool]string{true: " failed", false: " ok"}[err != nil]]++
		if x.up != nil && s.kind != "begin" {
			dir := path.Dir(x.upPath)
			for _, q := range []string{s.path, s.to} {
				if (s.kind == "rename" || s.kind == "remove" || s.kind == "rmdir" || s.kind == "copy") && (dir == q || strings.HasPrefix(dir, q+"/")) {
					x.upMoved = true // also when it failed: a DELETE removes what it can
				}
			}
		}
		if x.verbose {
			t.Logf("seed %d: %s", seed, line)
		}
		if left := x.leftovers(); len(left) > 0 {
			failf("left on the disk: %q", left)
		}
		if err != nil {
			was, is := before, after
			switch {
			case s.via == viaDAV && (s.kind == "remove" || s.kind == "rmdir"):
				// A collection's DELETE removes what it can, as rm -r
				// does, and answers for what it could not (RFC 4918
				// 9.6.1): only what lay below it may be gone.
				was, is = before.notBelow(s.path), after.notBelow(s.path)
			case s.via == viaDAV && strings.Contains(err.Error(), "cannot be removed whole"):
				// A COPY or MOVE onto a collection that cannot be
				// removed whole is undone, and the collection is back
				// as that removal left it (README, WebDAV).
				was, is = before.notBelow(s.to), after.notBelow(s.to)
			}
			if d := was.diff(is); d != "" {
				failf("%s failed (%v) but changed the disk: %s", s, err, d)
			}
		} else if why := x.landed(s, before, after); why != "" {
			failf("%s succeeded but %s", s, why)
		}
		if s.kind == "end" && err != nil && after.holds(x.ended) {
			failf("the upload failed to close (%v) but its content is on the disk", err)
		}
		// Look through a protocol drawn at random: another session, or
		// the one that made the change.
		via := crossVia[rng.IntN(len(crossVia))]
		p := crossPaths[rng.IntN(len(crossPaths))]
		if rng.IntN(4) == 0 {
			p = path.Dir(p)
		}
		x.tally["look "+via]++
		if why := x.observe(base, via, p, after); why != "" {
			failf("%s sees %s unlike the disk: %s", via, p, why)
		}
		if t.Failed() {
			return
		}
	}
}

// crossEntry is what the disk holds at a path.
type crossEntry struct {
	dir   bool
	size  int64
	mode  os.FileMode
	mtime int64 // seconds
	sum   string
	names []string // a directory's, sorted
}

// shortSum is what crossEntry keeps of content: the first 8 bytes of its
// sha256, in hex.
func shortSum(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// crossTree is a seed's tree on the disk, by path relative to it.
type crossTree map[string]crossEntry

func (x *crossSessions) snapshot(t *testing.T, base string) crossTree {
	t.Helper()
	tree := crossTree{}
	x.temps = nil
	top := filepath.Join(x.disk, base)
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		if strings.HasPrefix(d.Name(), ".upgate-") {
			// An upload's temp file, or a replaced destination set
			// aside: no protocol shows them, and none may stay.
			x.temps = append(x.temps, filepath.ToSlash(rel))
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := crossEntry{dir: fi.IsDir(), size: fi.Size(), mode: fi.Mode().Perm(), mtime: fi.ModTime().Unix()}
		if e.dir {
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, de := range ents {
				if !strings.HasPrefix(de.Name(), ".upgate-") {
					e.names = append(e.names, de.Name())
				}
			}
			e.size = 0
		} else {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.sum = shortSum(b)
		}
		tree[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// blocked reports whether the tree's owner may not reach p to look at
// it: a directory on the way it may not search, p a directory it may not
// read and search, or a file it may not read.
func (tr crossTree) blocked(p string) bool {
	for q := p; ; q = path.Dir(q) {
		if e, ok := tr[q]; ok {
			switch {
			case q != p && e.mode&0o100 == 0:
				return true
			case q == p && e.dir && e.mode&0o500 != 0o500:
				return true
			case q == p && !e.dir && e.mode&0o400 == 0:
				return true
			}
		}
		if q == "." {
			return false
		}
	}
}

// notBelow is the tree without what lies below p, and without p's
// names.
func (tr crossTree) notBelow(p string) crossTree {
	out := crossTree{}
	for q, e := range tr {
		switch {
		case strings.HasPrefix(q, p+"/"):
		case q == p:
			e.names = nil
			out[q] = e
		default:
			out[q] = e
		}
	}
	return out
}

// leftovers are the upgate names the last snapshot found that should not
// be there: any, but the temp file of an upload left open.
func (x *crossSessions) leftovers() []string {
	var l []string
	for _, p := range x.temps {
		if x.up != nil && strings.HasPrefix(path.Base(p), ".upgate-upload-") && strings.HasSuffix(p, "-"+path.Base(x.upPath)) {
			continue
		}
		l = append(l, p)
	}
	return l
}

// holds reports whether a file in the tree has exactly data.
func (tr crossTree) holds(data string) bool {
	if data == "" {
		return false
	}
	want := shortSum([]byte(data))
	for _, e := range tr {
		if !e.dir && e.sum == want {
			return true
		}
	}
	return false
}

// diff says how two snapshots differ, ignoring directories' mtimes (a
// failed upload may have made and removed its temp file there, as a
// failed write on a local disk may) and "" when they do not.
func (tr crossTree) diff(other crossTree) string {
	var d []string
	for p, e := range tr {
		o, ok := other[p]
		switch {
		case !ok:
			d = append(d, p+" gone")
		case e.dir != o.dir || e.size != o.size || e.mode != o.mode || e.sum != o.sum || !slices.Equal(e.names, o.names):
			d = append(d, fmt.Sprintf("%s %+v -> %+v", p, e, o))
		case !e.dir && e.mtime != o.mtime:
			d = append(d, fmt.Sprintf("%s mtime %d -> %d", p, e.mtime, o.mtime))
		}
	}
	for p := range other {
		if _, ok := tr[p]; !ok {
			d = append(d, p+" appeared")
		}
	}
	slices.Sort(d)
	return strings.Join(d, "; ")
}

// landed says what of a change that succeeded is not on the disk, "" when
// all is.
func (x *crossSessions) landed(s crossStep, before, after crossTree) string {
	e, ok := after[s.path]
	switch s.kind {
	case "put":
		if !ok || e.dir || e.sum != shortSum([]byte(s.data)) {
			return fmt.Sprintf("the disk holds %+v (present %v)", e, ok)
		}
	case "append":
		old := before[s.path]
		if !ok || e.dir || e.size != old.size+int64(len(s.data)) {
			return fmt.Sprintf("the disk holds %+v (before %+v)", e, old)
		}
	case "rename":
		if s.path == s.to {
			return ""
		}
		src := before[s.path]
		dst, ok2 := after[s.to]
		if _, still := after[s.path]; still || !ok2 || dst.dir != src.dir || dst.sum != src.sum {
			return fmt.Sprintf("the disk holds %+v at the destination (present %v), the source %v", dst, ok2, still)
		}
	case "remove", "rmdir":
		if ok {
			return fmt.Sprintf("it is still there: %+v", e)
		}
	case "mkdir":
		if !ok || !e.dir {
			return fmt.Sprintf("the disk holds %+v (present %v)", e, ok)
		}
	case "copy":
		src := before[s.path]
		dst, ok2 := after[s.to]
		if !ok2 || dst.dir != src.dir || dst.sum != src.sum {
			return fmt.Sprintf("the disk holds %+v at the destination (present %v), want %+v", dst, ok2, src)
		}
	case "chtimes":
		if !ok || e.mtime != s.mtime.Unix() {
			return fmt.Sprintf("the disk holds %+v (present %v)", e, ok)
		}
	case "chmod":
		if !ok || e.mode != s.mode {
			return fmt.Sprintf("the disk holds %+v (present %v)", e, ok)
		}
	case "begin":
		// Atomic for others: nothing shows until the end.
		if d := before.diff(after); d != "" {
			return "the disk shows it already: " + d
		}
	case "end":
		if !after.holds(x.ended) {
			return "no file on the disk holds what it wrote"
		}
	}
	return ""
}

// apply makes the change through its protocol.
func (x *crossSessions) apply(base string, s crossStep) error {
	p, to := "/"+base+"/"+s.path, "/"+base+"/"+s.to
	switch s.via {
	case viaSFTP:
		c := x.sftp
		switch s.kind {
		case "put", "append":
			flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			if s.kind == "append" {
				flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
			}
			f, err := sftpWrite(c, p, flags, s.data)
			if err != nil {
				return err
			}
			return f.Close()
		case "rename":
			return c.PosixRename(p, to)
		case "remove":
			return c.Remove(p)
		case "mkdir":
			return c.Mkdir(p)
		case "rmdir":
			return c.RemoveDirectory(p)
		case "chtimes":
			return c.Chtimes(p, s.mtime, s.mtime)
		case "chmod":
			return c.Chmod(p, s.mode)
		case "begin":
			f, err := sftpWrite(c, p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, s.data)
			if err != nil {
				return err
			}
			x.up, x.upPath, x.upRest, x.upAll, x.upMoved = f, s.path, "and its end", s.data+"and its end", false
			return nil
		case "end":
			f := x.up
			x.up, x.ended = nil, x.upAll
			if _, err := f.WriteAt([]byte(x.upRest), int64(len(x.upAll)-len(x.upRest))); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
	case viaFTP:
		c := x.ftp
		switch s.kind {
		case "put":
			return c.Stor(p, strings.NewReader(s.data))
		case "append":
			return c.Append(p, strings.NewReader(s.data))
		case "rename":
			return c.Rename(p, to)
		case "remove":
			return c.Delete(p)
		case "mkdir":
			return c.MakeDir(p)
		case "rmdir":
			return c.RemoveDir(p)
		case "chtimes":
			return c.SetTime(p, s.mtime)
		case "chmod":
			if err := x.site.PrintfLine("SITE CHMOD %o %s", s.mode, p); err != nil {
				return err
			}
			_, _, err := x.site.ReadResponse(200)
			return err
		}
	case viaDAV:
		switch s.kind {
		case "put":
			return x.davDo("PUT", p, strings.NewReader(s.data), nil)
		case "rename", "copy":
			m := map[bool]string{true: "MOVE", false: "COPY"}[s.kind == "rename"]
			return x.davDo(m, p, nil, map[string]string{"Destination": x.url + (&url.URL{Path: to}).EscapedPath(), "Overwrite": "T"})
		case "remove", "rmdir":
			return x.davDo("DELETE", p, nil, nil)
		case "mkdir":
			return x.davDo("MKCOL", p, nil, nil)
		case "chtimes":
			body := `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><lastmodified xmlns="DAV:">` +
				strconv.FormatInt(s.mtime.Unix(), 10) + `</lastmodified></D:prop></D:set></D:propertyupdate>`
			return x.davDo("PROPPATCH", p, strings.NewReader(body), nil)
		}
	}
	return fmt.Errorf("no %s %s", s.via, s.kind)
}

// sftpWrite opens p with flags and writes data; the file stays open.
func sftpWrite(c *sftp.Client, p string, flags int, data string) (*sftp.File, error) {
	f, err := c.OpenFile(p, flags)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write([]byte(data)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// davStatus finds the statuses of a multistatus answer.
var davStatus = regexp.MustCompile(`<D:status>([^<]*)</D:status>`)

// davDo sends a WebDAV request and returns an error unless it succeeded
// (a PROPPATCH's 207 only when every property was set).
func (x *crossSessions) davDo(method, p string, body io.Reader, hdr map[string]string) error {
	req, err := http.NewRequest(method, x.url+(&url.URL{Path: p}).EscapedPath(), body)
	if err != nil {
		return err
	}
	req.SetBasicAuth("alice", gwtest.Users["alice"])
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := x.dav.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusMultiStatus && method == "PROPPATCH":
		statuses := davStatus.FindAllSubmatch(b, -1)
		ok := len(statuses) > 0
		for _, st := range statuses {
			ok = ok && string(st[1]) == "HTTP/1.1 200 OK"
		}
		if ok {
			return nil
		}
	case resp.StatusCode >= 200 && resp.StatusCode < 300 && resp.StatusCode != http.StatusMultiStatus:
		return nil
	}
	return fmt.Errorf("%s %s: %s %s", method, p, resp.Status, bytes.TrimSpace(b))
}

// observe has a session of via report p, and says how that differs from
// the disk, "" when it does not.
func (x *crossSessions) observe(base, via, p string, tree crossTree) string {
	want, exists := tree[p]
	if p == "." {
		want, exists = tree["."], true
	}
	full := "/" + base
	if p != "." {
		full += "/" + p
	}
	got, err := x.look(via, full)
	why := compareLook(got, err, want, exists, x.owner != 0 && tree.blocked(p))
	if why == "" || via != viaSFTP || x.up == nil {
		return why
	}
	// The SFTP session sees its own upload in progress where it opened
	// it (README, "Atomic for others, POSIX for oneself"): a file holding
	// what it wrote so far, in its directory's listing; others see the
	// disk. Where another session moved or removed the upload's
	// directory meanwhile, the session's view of that path is not
	// checked: it may still show the upload, or miss what is there now,
	// until the upload ends (its close follows the directory, as the
	// file of sftp-server's descriptor would, or fails, checked above).
	written := strings.TrimSuffix(x.upAll, x.upRest)
	switch dir := path.Dir(x.upPath); {
	case x.upMoved && (p == x.upPath || p == dir):
		return ""
	case p == x.upPath:
		want, exists = crossEntry{size: int64(len(written)), sum: shortSum([]byte(written)), mtime: -1}, true
	case p == dir && exists && want.dir && !slices.Contains(want.names, path.Base(x.upPath)):
		want.names = append(slices.Clone(want.names), path.Base(x.upPath))
		slices.Sort(want.names)
	default:
		return why
	}
	if compareLook(got, err, want, exists, false) == "" {
		return ""
	}
	return why + fmt.Sprintf(" (nor its own upload's %+v)", want)
}

// compareLook says how what a session reported (got, err) differs from
// want (exists: there is something at the path), "" when it does not;
// blocked: a permission error is the kernel's answer there.
func compareLook(got crossEntry, err error, want crossEntry, exists, blocked bool) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if exists {
			return fmt.Sprintf("missing; the disk holds %+v", want)
		}
		return ""
	case errors.Is(err, fs.ErrPermission) && blocked:
		return "" // the agent's user may not look there, as the kernel says
	case err != nil:
		return "error: " + err.Error()
	case !exists:
		return fmt.Sprintf("%+v; the disk holds nothing there", got)
	case got.dir != want.dir:
		return fmt.Sprintf("directory %v; the disk's is %v", got.dir, want.dir)
	case got.dir && !slices.Equal(got.names, want.names):
		return fmt.Sprintf("names %q; the disk's %q", got.names, want.names)
	case !got.dir && (got.size != want.size || got.sum != want.sum):
		return fmt.Sprintf("size %d sum %s; the disk's %d %s", got.size, got.sum, want.size, want.sum)
	case !got.dir && want.mtime != -1 && got.mtime != want.mtime:
		return fmt.Sprintf("mtime %d; the disk's %d", got.mtime, want.mtime)
	}
	return ""
}

// look reports p through via: kind, a file's size, mtime and content, a
// directory's names. fs.ErrNotExist when the session says p is missing.
func (x *crossSessions) look(via, p string) (crossEntry, error) {
	var e crossEntry
	switch via {
	case viaSFTP:
		fi, err := x.sftp.Lstat(p)
		if err != nil {
			return e, err
		}
		e.dir, e.size, e.mtime = fi.IsDir(), fi.Size(), fi.ModTime().Unix()
		if e.dir {
			ents, err := x.sftp.ReadDir(p)
			if err != nil {
				return e, err
			}
			for _, fi := range ents {
				e.names = append(e.names, fi.Name())
			}
			slices.Sort(e.names)
			return e, nil
		}
		f, err := x.sftp.Open(p)
		if err != nil {
			return e, err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			return e, err
		}
		e.sum = shortSum(b)
		return e, nil
	case viaFTP:
		// An FTP 550 says why in its text alone.
		ftpErr := func(err error) error {
			var tp *textproto.Error
			switch {
			case !errors.As(err, &tp) || tp.Code != 550:
				return err
			case strings.Contains(tp.Msg, "permission denied"):
				return fmt.Errorf("%w: %v", fs.ErrPermission, err)
			}
			return fmt.Errorf("%w: %v", fs.ErrNotExist, err)
		}
		ent, err := x.ftp.GetEntry(p)
		if err != nil {
			return e, ftpErr(err)
		}
		e.dir, e.size, e.mtime = ent.Type == ftp.EntryTypeFolder, int64(ent.Size), ent.Time.Unix()
		if e.dir {
			ents, err := x.ftp.List(p)
			if err != nil {
				return e, ftpErr(err)
			}
			for _, en := range ents {
				if en.Name != "." && en.Name != ".." {
					e.names = append(e.names, en.Name)
				}
			}
			slices.Sort(e.names)
			return e, nil
		}
		r, err := x.ftp.Retr(p)
		if err != nil {
			return e, ftpErr(err)
		}
		b, err := io.ReadAll(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return e, err
		}
		e.sum = shortSum(b)
		return e, nil
	}
	return x.davLook(p)
}

// davMultistatus is the part of a PROPFIND answer davLook reads.
type davMultistatus struct {
	Responses []struct {
		Href string `xml:"href"`
		Prop struct {
			Collection *struct{} `xml:"resourcetype>collection"`
			Length     string    `xml:"getcontentlength"`
			Modified   string    `xml:"getlastmodified"`
		} `xml:"propstat>prop"`
	} `xml:"response"`
}

func (x *crossSessions) davLook(p string) (crossEntry, error) {
	var e crossEntry
	u := x.url + (&url.URL{Path: p}).EscapedPath()
	req, err := http.NewRequest("PROPFIND", u, strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>`))
	if err != nil {
		return e, err
	}
	req.SetBasicAuth("alice", gwtest.Users["alice"])
	req.Header.Set("Depth", "1")
	resp, err := x.dav.Do(req)
	if err != nil {
		return e, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusMultiStatus:
	case http.StatusNotFound:
		return e, fmt.Errorf("%w: PROPFIND %s: %s", fs.ErrNotExist, p, resp.Status)
	case http.StatusForbidden:
		return e, fmt.Errorf("%w: PROPFIND %s: %s %s", fs.ErrPermission, p, resp.Status, b)
	default:
		return e, fmt.Errorf("PROPFIND %s: %s %s", p, resp.Status, b)
	}
	var ms davMultistatus
	if err := xml.Unmarshal(b, &ms); err != nil {
		return e, fmt.Errorf("PROPFIND %s: %v", p, err)
	}
	self := strings.TrimSuffix(p, "/")
	for _, r := range ms.Responses {
		href, err := url.PathUnescape(r.Href)
		if err != nil {
			return e, err
		}
		href = strings.TrimSuffix(href, "/")
		if href != self {
			e.names = append(e.names, path.Base(href))
			continue
		}
		e.dir = r.Prop.Collection != nil
		if r.Prop.Length != "" {
			if e.size, err = strconv.ParseInt(r.Prop.Length, 10, 64); err != nil {
				return e, err
			}
		}
		t, err := http.ParseTime(r.Prop.Modified)
		if err != nil {
			return e, fmt.Errorf("PROPFIND %s: getlastmodified %q: %v", p, r.Prop.Modified, err)
		}
		e.mtime = t.Unix()
	}
	slices.Sort(e.names)
	if e.dir {
		return e, nil
	}
	req, err = http.NewRequest("GET", u, nil)
	if err != nil {
		return e, err
	}
	req.SetBasicAuth("alice", gwtest.Users["alice"])
	resp, err = x.dav.Do(req)
	if err != nil {
		return e, err
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	switch {
	case err == nil && resp.StatusCode == http.StatusForbidden:
		return e, fmt.Errorf("%w: GET %s: %s %s", fs.ErrPermission, p, resp.Status, b)
	case err != nil || resp.StatusCode != http.StatusOK:
		return e, fmt.Errorf("GET %s: %s %v", p, resp.Status, err)
	}
	e.sum = shortSum(b)
	return e, nil
}
