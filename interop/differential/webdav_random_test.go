package differential_test

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/ddmin"
)

// TestWebDAVRandom is TestSFTPRandom's twin for WebDAV: it drives Apache's
// mod_dav_fs and upgate's WebDAV frontend (its agent a process of its
// own) with the same seeded random sequences of requests (PUT, GET,
// HEAD, MKCOL, DELETE, COPY and MOVE with their Overwrite and Depth,
// PROPFIND) over a small namespace, and compares every status, body
// (by sha256) and listing, and the trees after each request and at the
// end. It is skipped unless DIFF_RANDOM names the seeds; it reads the
// same variables as TestSFTPRandom (randSettings), DIFF_RANDOM_SKIP
// naming the kinds of davRandKinds.
//
// A difference that a row of deliberateDiffs explains (davRandDeliberate
// says which) is logged apart and never fails; the others are logged,
// grouped by their first request, and fail the test only with
// DIFF_RANDOM_STRICT.
func TestWebDAVRandom(t *testing.T) {
	runDAVRandom(t, randSettings(t))
}

// TestWebDAVRandomQuick runs TestWebDAVRandom's first 40 seeds on every
// test run, strictly: a difference no row explains fails it. (The SFTP
// and FTP random tests take minutes and are run by hand; these take
// seconds.)
func TestWebDAVRandomQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("random WebDAV sequences against Apache; skipped with -short")
	}
	env := randEnv{steps: 60, budget: 5 * time.Minute, skip: map[string]bool{}, strict: true}
	for seed := uint64(1); seed <= 40; seed++ {
		env.seeds = append(env.seeds, seed)
	}
	runDAVRandom(t, env)
}

// runDAVRandom runs env's seeds against Apache and upgate, and logs (and
// with env.strict fails on) the differences no row explains.
func runDAVRandom(t *testing.T, env randEnv) {
	r := &davRandRunner{t: t, ref: apacheDAVSide(t), ug: upgateDAVSide(t)}
	idle := r.ug.idle
	r.ug.idle = nil
	r.idle = func() string { return softly(func() { idle() }) }
	k := newRandTally(env, "requests", "%s")
	for _, seed := range env.seeds {
		if k.spent(t) {
			break
		}
		ops := genDAVRandOps(seed, env.steps, env.skip)
		res := r.run(fmt.Sprintf("r%d", seed), ops)
		if env.verbose {
			for i, o := range res.ops {
				t.Logf("seed %d %02d %s\n\tapache: %s\n\tupgate: %s", seed, i, ops[i], o.ref, o.ug)
			}
		}
		real := k.add(seed, len(ops), res.diffs, signatureBy("apache"))
		if len(real) == 0 {
			continue
		}
		first := real[0]
		head := fmt.Sprintf("seed %d: %d differences not deliberate; the first:", seed, len(real))
		if first.index < 0 {
			head += fmt.Sprintf(" tree %s, %s", first.path, first.op)
		}
		t.Log(firstDiffText(head, ops, real, "apache: ", "upgate: "))
		if env.minimise {
			cut := ops
			if first.index >= 0 {
				cut = ops[:first.index+1]
			}
			m := ddmin.Shrink(cut, 300, func(c []davRandOp) bool {
				return davHas(r.run(fmt.Sprintf("r%dm%d", seed, r.runs), c), first)
			})
			t.Log(runText(fmt.Sprintf("seed %d minimised to %d requests", seed, len(m)), m, r.run(fmt.Sprintf("r%dmin", seed), m), "apache: ", "upgate: "))
		}
	}
	k.report(t)
}

// davHas reports whether res shows the difference want: the same request
// with the same two answers, or the same tree entry with the same two
// states, after whichever request.
func davHas(res randResult, want randDiff) bool {
	for _, d := range res.diffs {
		if d.index >= 0 == (want.index >= 0) && d.path == want.path && d.ref == want.ref && d.ug == want.ug &&
			(d.index < 0 || d.op == want.op) {
			return true
		}
	}
	return false
}

// davRandOp is one random request. Paths are relative to the run's
// directory; a trailing "/" is sent as it is.
type davRandOp struct {
	kind        string // davRandKinds
	path, path2 string // path2: a COPY's or MOVE's Destination
	hdr         []string
	data        string
}

func (o davRandOp) String() string {
	s := o.kind + " " + o.path
	if o.path2 != "" {
		s += " -> " + o.path2
	}
	for i := 0; i+1 < len(o.hdr); i += 2 {
		s += " " + o.hdr[i] + ":" + o.hdr[i+1]
	}
	if o.kind == "PUT" {
		d := o.data
		if len(d) > 12 {
			d = fmt.Sprintf("%.12s...(%d bytes)", d, len(d))
		}
		s += fmt.Sprintf(" %q", d)
	}
	return s
}

var (
	// davRandKinds are the request kinds, each with its weight.
	davRandKinds = []randKind{
		{"PUT", 20}, {"GET", 9}, {"HEAD", 4}, {"MKCOL", 12}, {"DELETE", 10},
		{"COPY", 16}, {"MOVE", 16}, {"PROPFIND", 10}, {"LOCK", 5}, {"UNLOCK", 3},
	}
	// davRandNames is the namespace: the run's directory starts with a
	// ("alpha"), d and d/e ("echo data").
	davRandNames = []string{"a", "b", "c", "d", "d/e", "d/f", "d/g", "d/g/h", "d/g/i", "k", "k/l", "k/l/m", "a/x", "s p", "d/s p"}
	davRandData  = []string{"", "x", "alpha", "beta!", strings.Repeat("long line of text\n", 40)}
)

// genDAVRandOps draws n requests from seed.
func genDAVRandOps(seed uint64, n int, skip map[string]bool) []davRandOp {
	rng := rand.New(rand.NewPCG(seed, 0x64617621))
	pickKind := kindPicker(rng, davRandKinds, skip)
	if pickKind == nil {
		return nil
	}
	name := func() string {
		p := davRandNames[rng.IntN(len(davRandNames))]
		switch rng.IntN(24) {
		case 0:
			p += "/" // a trailing slash
		case 1:
			p = "./" + p
		case 2:
			p = strings.Replace(p, "/", "//", 1)
		case 3:
			p += "/." // "p/" once its dot-segments are gone
		case 4:
			p += "/x/.."
		}
		return p
	}
	pick := func(vals ...string) string { return vals[rng.IntN(len(vals))] }
	var ops []davRandOp
	for len(ops) < n {
		kind := pickKind()
		o := davRandOp{kind: kind, path: name()}
		switch kind {
		case "PUT":
			// (A PUT of a URL ending in / is a deliberate difference
			// that changes the tree: a fixed step of TestWebDAVDifferential.)
			o.path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(o.path, "/x/.."), "/."), "/")
			o.data = davRandData[rng.IntN(len(davRandData))]
		case "DELETE":
			if d := pick("", "", "", "infinity", "0"); d != "" {
				o.hdr = []string{"Depth", d}
			}
		case "COPY", "MOVE":
			o.path2 = name()
			if rng.IntN(8) == 0 {
				o.path2 = o.path + "/" + pick("x", "y/z") // into itself
			}
			if ow := pick("", "", "T", "F", "", "", "T", "F", "t", "f"); ow != "" {
				o.hdr = append(o.hdr, "Overwrite", ow)
			}
			d := pick("", "", "infinity", "0", "", "", "infinity", "0", "Infinity")
			if kind == "MOVE" {
				d = pick("", "", "", "", "infinity", "0", "", "", "", "", "infinity", "0", "Infinity")
			}
			if d != "" {
				o.hdr = append(o.hdr, "Depth", d)
			}
		case "PROPFIND":
			o.hdr = []string{"Depth", pick("0", "1", "1", "infinity")}
		case "LOCK":
			o.hdr = []string{"Depth", pick("0", "infinity")}
		}
		switch kind {
		case "PUT", "DELETE", "MKCOL", "COPY", "MOVE":
			// The side's last lock token, where one may be needed (or
			// is stale, or never was: "(<>)").
			if rng.IntN(4) == 0 {
				// Or a list of two conditions (an AND), or two lists (an
				// OR), with a Not.
				o.hdr = append(o.hdr, "If", pick("(<TOKEN>)", "(<TOKEN>)", "(<TOKEN>)", "(Not <TOKEN>)", "(<TOKEN>) (Not <DAV:no-lock>)", "(<TOKEN> Not <DAV:no-lock>)"))
			}
			// A precondition of RFC 9110 13.1 that needs no ETag (each
			// side has its own): create only, replace only, a tag that
			// matches nothing.
			if rng.IntN(6) == 0 {
				c := pick("If-None-Match: *", "If-Match: *", `If-Match: "nope"`, `If-None-Match: "nope"`, "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT",
					"If-Match: ETAG", "If-None-Match: ETAG")
				k, v, _ := strings.Cut(c, ": ")
				o.hdr = append(o.hdr, k, v)
			}
		}
		ops = append(ops, o)
	}
	return ops
}

// davURLPath is p under root, escaped for a URL; a trailing "/" stays.
func davURLPath(root, p string) string {
	return (&url.URL{Path: root + "/" + p}).EscapedPath()
}

// exec sends o to s, the run's directory being root, and shows the answer
// as the WebDAV differential's steps do (davStatus, davGet, davPropfind),
// with root in paths as /ROOT.
func (o davRandOp) exec(s *davSide, root string) string {
	p := davURLPath(root, o.path)
	var hdr []string
	if o.path2 != "" {
		hdr = append(hdr, "Destination", davURLPath(root, o.path2))
	}
	hdr = append(hdr, o.hdr...)
	for i := 1; i < len(hdr); i += 2 {
		if hdr[i] == "ETAG" {
			hdr[i] = s.etag(path.Join(root, path.Clean("/"+o.path)))
		}
	}
	var a string
	switch o.kind {
	case "GET":
		a = davGet(p)(s)
	case "HEAD":
		status, h, _ := s.do("HEAD", p, "")
		a = status
		if status == "200" {
			// Apache's HEAD of an empty file sends no Content-Length,
			// as RFC 9110 9.3.2 lets a HEAD omit it; upgate sends 0.
			n := h.Get("Content-Length")
			if n == "" {
				n = "0"
			}
			a += " length " + n
		}
	case "PROPFIND":
		a = davPropfind(p, o.hdr[1])(s)
	case "LOCK":
		status, h, _ := s.do("LOCK", p, `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>random</D:owner></D:lockinfo>`,
			"Depth", o.hdr[1], "Timeout", "Second-600", "Content-Type", "application/xml")
		a = status
		if tok := strings.Trim(h.Get("Lock-Token"), "<>"); tok != "" {
			s.token = tok
			s.locks = append(s.locks, [2]string{p, tok})
			a += " token"
		}
	case "UNLOCK":
		a = davStatus("UNLOCK", p, "", "Lock-Token", "<TOKEN>")(s)
	default:
		a = davStatus(o.kind, p, o.data, hdr...)(s)
	}
	return strings.ReplaceAll(a, root, "/ROOT")
}

// etag is the side's ETag of p (a path below the user's "/"), read by a
// HEAD once its mtime is set back on disk (aged: Apache's ETag of a file
// changed within the second is weak), or "\"none\"" where the HEAD
// gives none (nothing there; a collection on upgate).
func (s *davSide) etag(p string) string {
	if fi, err := os.Lstat(filepath.Join(s.dir, filepath.FromSlash(p))); err == nil && fi.Mode().IsRegular() {
		s.aged(p)
	}
	_, h, _ := s.do("HEAD", (&url.URL{Path: p}).EscapedPath(), "")
	if e := h.Get("ETag"); e != "" {
		return e
	}
	return `"none"`
}

// davRandRunner runs sequences on both sides.
type davRandRunner struct {
	t       *testing.T
	ref, ug *davSide
	idle    func() string // upgate's agent holds no file ("" when idle)
	leaked  bool
	runs    int
}

// trees snapshots the run's directory of both sides (davSnapshot).
func (r *davRandRunner) trees(name string) [2]map[string]treeEntry {
	var out [2]map[string]treeEntry
	for i, s := range []*davSide{r.ref, r.ug} {
		out[i] = davSnapshot(r.t, filepath.Join(s.dir, name))
	}
	return out
}

// run seeds /name/w on both servers (a, d, d/e), runs ops on both, one
// request at a time, and compares the answers and, after each request
// until they first differ and at the end, the trees.
func (r *davRandRunner) run(name string, ops []davRandOp) randResult {
	r.runs++
	root := "/" + name + "/w"
	for _, s := range []*davSide{r.ref, r.ug} {
		s.token = ""
		for _, st := range []struct{ method, p, body, want string }{
			{"MKCOL", "/" + name, "", "201"},
			{"MKCOL", root, "", "201"},
			{"PUT", root + "/a", "alpha", "201"},
			{"MKCOL", root + "/d", "", "201"},
			{"PUT", root + "/d/e", "echo data", "201"},
		} {
			if got, _, _ := s.do(st.method, st.p, st.body); got != st.want {
				r.t.Fatalf("%s: setup %s %s: %s", s.name, st.method, st.p, got)
			}
		}
	}
	var res randResult
	treesDiffer := false
	after := "at the end" // the request after which the trees differ
	compare := func(trees [2]map[string]treeEntry) {
		for _, d := range compareTrees("webdav", trees[0], trees[1], false) {
			res.diffs = append(res.diffs, randDiff{index: -1, op: after, path: strings.TrimPrefix(d.step, "tree "), ref: d.ref, ug: d.upgate})
			treesDiffer = true
		}
	}
	for i, o := range ops {
		a := randAnswer{ref: o.exec(r.ref, root), ug: o.exec(r.ug, root)}
		res.ops = append(res.ops, a)
		if a.ref != a.ug {
			row, diverged := davRandDeliberate(o, filepath.Join(r.ref.dir, name, "w"), a.ref, a.ug)
			res.diffs = append(res.diffs, randDiff{index: i, op: o.String(), ref: a.ref, ug: a.ug, row: row})
			if diverged {
				treesDiffer = true // and deliberately so: nothing after it compares
				break
			}
		}
		if !treesDiffer {
			after = fmt.Sprintf("after %02d %s", i, o)
			compare(r.trees(name))
		}
	}
	for _, s := range []*davSide{r.ref, r.ug} {
		for _, l := range s.locks {
			_, _, _ = s.do("UNLOCK", l[0], "", "Lock-Token", "<"+l[1]+">")
		}
		s.locks = nil
	}
	r.ref.c.CloseIdleConnections()
	r.ug.c.CloseIdleConnections()
	if !r.leaked {
		if msg := r.idle(); msg != "" {
			res.diffs = append(res.diffs, randDiff{index: -1, path: "(agent)", ref: "idle", ug: msg})
			r.leaked = true
		}
	}
	if !treesDiffer {
		after = "at the end"
		compare(r.trees(name))
	}
	for _, s := range []*davSide{r.ref, r.ug} {
		_ = os.RemoveAll(filepath.Join(s.dir, name))
	}
	return res
}

// davRandDeliberate names the row of deliberateDiffs (by its reason)
// that explains o's answers, ref's and upgate's, or "". dir is Apache's
// run directory on disk, as the request left it. Every deliberate
// difference but one is a refusal on both sides that changes nothing;
// that one (diverged) is Apache's MOVE or COPY of a file onto the
// collection that holds it, which deletes both, so that the runs part.
func davRandDeliberate(o davRandOp, dir, ref, ug string) (why string, diverged bool) {
	why = davRandRow(o, dir, ref, ug)
	// (Apache's MOVE that fails with 500 into a missing collection has
	// ended the locks on its source by then: seeds 6951, 7957.)
	return why, why == whyDAVDstHoldsSource || why == whyDAVLockNull || why == whyDAVIfUntagged ||
		why == whyDAVCondNew || why == whyDAVCondDestination ||
		why == whyDAVMoveNoParent && ref == "500" && slices.Contains(o.hdr, "If")
}

// davSlash reports whether the URL path p names a collection: it ends in
// "/" once its dot-segments are removed.
func davSlash(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

// davCondHolds reports whether every precondition in hdr holds for any
// existing file of the runs: If-Match: *, or If-None-Match of a tag no
// server makes.
func davCondHolds(hdr []string) bool {
	for i := 0; i+1 < len(hdr); i += 2 {
		switch k, v := hdr[i], hdr[i+1]; {
		case k == "If-Match" && v != "*", k == "If-None-Match" && v == "*", k == "If-Unmodified-Since":
			return false
		}
	}
	return true
}

// davRandRow is davRandDeliberate's row.
func davRandRow(o davRandOp, dir, ref, ug string) string {
	kind := func(p string) string {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(path.Clean("/"+p))))
		switch {
		case err != nil:
			return "missing"
		case fi.IsDir():
			return "dir"
		}
		return "file"
	}
	// fileAbove reports whether a proper ancestor of p is a file.
	fileAbove := func(p string) bool {
		for q := path.Dir(path.Clean("/" + p)); q != "/"; q = path.Dir(q) {
			if kind(q) == "file" {
				return true
			}
		}
		return false
	}
	slash := davSlash(o.path)
	missingParent := func(p string) bool { return kind(path.Dir(path.Clean("/"+p))) == "missing" }
	switch o.kind {
	case "GET", "HEAD":
		if ref == "404" && ug == "405" && kind(o.path) == "dir" {
			return whyDAVGetCollection
		}
	case "PUT":
		switch {
		case ref == "400" && ug == "409" && fileAbove(o.path):
			return whyDAVFileParent
		case ug == "405" && (ref == "409" && kind(o.path) == "dir" || ref == "400" && slash && kind(o.path) == "file"):
			return whyDAVPutCollection
		}
	case "LOCK":
		if ref == "400" && ug == "409" && fileAbove(o.path) {
			return whyDAVFileParent
		}
	case "MKCOL":
		switch {
		case ref == "400" && ug == "409" && fileAbove(o.path):
			return whyDAVFileParent
		case ref == "400" && ug == "405" && slash && kind(o.path) == "file":
			return whyDAVNotACollection
		}
	}
	if o.kind == "LOCK" && strings.HasSuffix(ug, " token") && strings.HasPrefix(ug, "201") && kind(o.path) == "missing" {
		return whyDAVLockNull
	}
	hasIf := slices.Contains(o.hdr, "If")
	copyMove := o.kind == "COPY" || o.kind == "MOVE"
	hasCond := slices.Contains(o.hdr, "If-Match") || slices.Contains(o.hdr, "If-None-Match") || slices.Contains(o.hdr, "If-Unmodified-Since")
	done := ug == "201" || ug == "204"
	switch {
	case hasCond && ref == "412" && done && copyMove && davCondHolds(o.hdr) && !slices.Contains(o.hdr, "If-None-Match") &&
		kind(o.path2) == "missing":
		// (Only an If-Match: * the existing source meets, where the
		// destination does not exist: upgate must refuse the others, and
		// Apache's 412 must come from the destination; a review.)
		return whyDAVCondDestination
	case hasCond && ref == "412" && done && slices.Contains(o.hdr, "If-Unmodified-Since") && kind(o.path) == "missing":
		return whyDAVCondNew
	case hasCond && ref == "412" && (ug == "409" || ug == "403" || ug == "423"),
		hasCond && ug == "412" && ref == "400":
		// The pairs seen (a review counted them): Apache's precondition
		// before a new name's parent (409), the nesting (403), a lock
		// (423); its 400 of a path below a file before upgate's 412.
		return whyDAVCheckOrder
	}
	switch {
	case ug == "412" && hasIf && strings.HasPrefix(ref, "4") && ref != "412",
		ug == "412" && hasIf && ref == "207", // an If list that does not hold, against Apache's lock refusal
		ref == "412" && ug == "403" && hasIf && copyMove,
		(ref == "423" || ref == "424") && strings.HasPrefix(ug, "4") && ug != "423" && ug != "412",
		ug == "423" && strings.HasPrefix(ref, "4") && ref != "423" && ref != "424",
		ug == "423" && ref == "500" && o.kind == "MOVE" && missingParent(o.path2): // Apache's 500 of whyDAVMoveNoParent
		return whyDAVCheckOrder
	case (ref == "207" || ref == "424") && ug == "423":
		return whyDAVLocked207
	case hasIf && (ref == "412" || ref == "424") && (ug == "201" || ug == "204"):
		return whyDAVIfUntagged
	case ref == "412" && hasIf && strings.HasPrefix(ug, "4"):
		return whyDAVCheckOrder
	case o.kind == "UNLOCK" && ref == "400" && (ug == "409" || ug == "204"):
		// 204: the token locks this path on upgate alone (a lock the
		// runs took apart); 409 for one of another path.
		return whyDAVUnlock
	}
	notACollection := fileAbove(o.path) || slash && kind(o.path) == "file"
	switch {
	case o.kind != "PUT" && o.kind != "MKCOL" && o.kind != "LOCK" && ref == "400" && ug == "404" && notACollection,
		o.kind == "LOCK" && ref == "400" && ug == "404" && slash && kind(o.path) == "file":
		return whyDAVNotACollection
	case (o.kind == "COPY" || o.kind == "MOVE") && ref == "400" && ug == "409" && !notACollection &&
		(fileAbove(o.path2) || davSlash(o.path2) && kind(o.path2) == "file"):
		return whyDAVFileParent
	case (o.kind == "COPY" || o.kind == "MOVE") && ug == "403" && ref != "403" &&
		strings.HasPrefix(path.Clean("/"+o.path), path.Clean("/"+o.path2)+"/"):
		return whyDAVDstHoldsSource
	case o.kind == "MOVE" && ref == "500" && ug == "409" && missingParent(o.path2):
		return whyDAVMoveNoParent
	case o.kind == "COPY" && ref == "403" && ug == "409" && missingParent(o.path2) && kind(o.path) == "dir":
		return whyDAVMoveNoParent
	}
	return ""
}
