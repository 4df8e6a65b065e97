package differential_test

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/ddmin"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// TestFTPRandom is TestSFTPRandom's twin for FTP: it drives vsftpd and
// upgate's FTP frontend (its agent a process of its own) with the same
// seeded random sequences of FTP commands on one session, over a small
// namespace seeded on disk with links (FTP cannot make them), and
// compares every reply code, the data, the sizes, times and listings,
// and the resulting trees. It is skipped unless DIFF_RANDOM names the
// seeds; it reads the same variables as TestSFTPRandom (randSettings):
// DIFF_RANDOM, DIFF_RANDOM_STEPS, DIFF_RANDOM_TIME, DIFF_RANDOM_MIN,
// DIFF_RANDOM_SKIP (operation kinds never drawn, as ftpRandKinds names
// them), DIFF_RANDOM_VERBOSE, DIFF_RANDOM_STRICT.
//
// vsftpd has no MLSD, MLST or MFMT: for those the vsftpd side answers
// with what it has (MDTM with a time for MFMT; STAT of the path for MLST
// and MLSD), and both answers are shown as the facts they agree on (type,
// mode, size, date), failures as "error".
//
// A difference that a row of deliberateDiffs explains (ftpRandDeliberate
// says which) is logged apart and never fails; the others are logged,
// grouped by their first operation, and fail the test only with
// DIFF_RANDOM_STRICT.
func TestFTPRandom(t *testing.T) {
	env := randSettings(t)
	r := newFTPRandRunner(t)
	k := newRandTally(env, "operations", "deliberateDiffs %q")
	for _, seed := range env.seeds {
		if k.spent(t) {
			break
		}
		ops := genFTPRandOps(seed, env.steps, env.skip)
		res := r.run(fmt.Sprintf("r%d", seed), ops)
		if env.verbose {
			for i, o := range res.ops {
				t.Logf("seed %d %02d %s\n\tvsftpd: %s\n\tupgate: %s", seed, i, ops[i], o.ref, o.ug)
			}
			for _, d := range res.diffs {
				if d.row != "" {
					t.Logf("seed %d: deliberate difference at %02d %s (deliberateDiffs %q)\n\tvsftpd: %s\n\tupgate: %s", seed, d.index, d.op, d.row, d.ref, d.ug)
				}
			}
		}
		real := k.add(seed, len(ops), res.diffs, signatureBy("vsftpd"))
		if len(real) == 0 {
			continue
		}
		first := real[0]
		t.Log(firstDiffText(fmt.Sprintf("seed %d: %d differences not deliberate; the first:", seed, len(real)), ops, real, "vsftpd: ", "upgate: "))
		if env.minimise {
			m := r.minimise(seed, ops, first)
			t.Log(r.show(fmt.Sprintf("seed %d minimised to %d operations", seed, len(m)), fmt.Sprintf("r%dmin", seed), m))
		}
	}
	k.report(t)
}

// ftpRandOp is one random operation: one FTP command, or a few that go
// together (REST and a transfer, RNFR and RNTO). Paths are relative to
// the run's directory when abs is set (sent as /ROOT/path), else sent as
// they are, relative to the session's working directory.
type ftpRandOp struct {
	kind        string
	path, path2 string
	abs, abs2   bool
	n           int64  // REST offset
	mode        string // SITE CHMOD's mode, LIST's option, TYPE's type
	data        string
}

// arg is p as sent, with the run's directory root.
func ftpArg(root, p string, abs bool) string {
	switch {
	case !abs:
		return p
	case p == ".":
		return root
	}
	return root + "/" + p
}

// refusedLast reports whether an operation's answers ("350 553", "1xx/550")
// end in a 4xx or 5xx reply.
func refusedLast(answers string) bool {
	f := strings.Fields(answers)
	if len(f) == 0 {
		return false
	}
	last := f[len(f)-1]
	return strings.HasPrefix(last, "4") || strings.HasPrefix(last, "5") || strings.Contains(last, "/5") || strings.Contains(last, "/4")
}

// cmds are the operation's command lines, with the run's directory root.
func (o ftpRandOp) cmds(root string) []string {
	p, q := ftpArg(root, o.path, o.abs), ftpArg(root, o.path2, o.abs2)
	rest := fmt.Sprintf("REST %d", o.n)
	switch o.kind {
	case "stor", "appe", "retr", "dele", "mkd", "rmd", "cwd", "size", "mdtm", "nlst", "stat", "mlsd", "mlst", "rnfr":
		return []string{strings.ToUpper(o.kind) + " " + p}
	case "rnto":
		return []string{"RNTO " + q}
	case "reststor":
		return []string{rest, "STOR " + p}
	case "restretr":
		return []string{rest, "RETR " + p}
	case "rest":
		return []string{rest}
	case "rename":
		return []string{"RNFR " + p, "RNTO " + q}
	case "cdup", "pwd":
		return []string{strings.ToUpper(o.kind)}
	case "mdtmset":
		return []string{"MDTM 20040109113320 " + p}
	case "mfmt":
		return []string{"MFMT 20040109113320 " + p}
	case "chmod":
		return []string{"SITE CHMOD " + o.mode + " " + p}
	case "list":
		l := "LIST"
		if o.mode != "" {
			l += " " + o.mode
		}
		if o.path != "" {
			l += " " + p
		}
		return []string{l}
	case "abortstor":
		return []string{"STOR " + p + " (reset)", "SIZE " + p, "DELE " + p}
	case "abortretr":
		return []string{"RETR /big.bin (reset)"}
	case "age":
		return []string{"(on disk) touch -h -d 2004-11-09 " + p}
	case "type":
		return []string{"TYPE " + o.mode}
	}
	return []string{"unknown " + o.kind}
}

func (o ftpRandOp) String() string {
	s := strings.Join(o.cmds("/ROOT"), "; ")
	switch o.kind {
	case "stor", "appe", "reststor", "abortstor":
		s += fmt.Sprintf(" data %q", o.data)
	}
	return s
}

// The namespace the operations draw from. seedFTPRand makes a, d, d/e,
// l (a link to a), ld (a link to d) and dang (a link to nowhere).
var (
	ftpRandPaths    = []string{"a", "b", "c", "d", "d/e", "d/f", "x", "x/y", "l", "ld", "ld/e", "dang"}
	ftpRandDirs     = []string{".", "d", "x", "ld", "a", "nowhere", "..", "d/.."}
	ftpRandStatDirs = []string{".", "d", "x", "..", "d/.."}
	ftpRandModes    = []string{"644", "600", "755", "444", "700", "555", "200", "640", "000", "750", "1777", "2755", "4755"}
	ftpRandKinds    = []randKind{
		{"stor", 8}, {"appe", 3}, {"reststor", 3}, {"retr", 5}, {"restretr", 2}, {"rest", 2},
		{"dele", 4}, {"mkd", 4}, {"rmd", 3}, {"rename", 4}, {"rnfr", 2}, {"rnto", 1},
		{"cwd", 4}, {"cdup", 2}, {"pwd", 3}, {"size", 4}, {"mdtm", 3}, {"mdtmset", 2}, {"mfmt", 2},
		{"chmod", 4}, {"list", 5}, {"nlst", 3}, {"stat", 3}, {"mlsd", 3}, {"mlst", 3},
		{"abortstor", 1}, {"abortretr", 1}, {"type", 2},
		// Drawn last, so that DIFF_RANDOM_SKIP=searchonly draws the
		// sequences of the seeds from before it: SITE CHMOD of a
		// directory to a mode its user may search but not read (or
		// neither), which the agent passes through since root.go.
		{"searchonly", 1},
	}
	ftpRandSearchModes = []string{"311", "100", "300"}
)

// genFTPRandOps draws n operations from seed alone.
func genFTPRandOps(seed uint64, n int, skip map[string]bool) []ftpRandOp {
	rng := rand.New(rand.NewPCG(seed, 0xf7b))
	pick := kindPicker(rng, ftpRandKinds, skip)
	if pick == nil {
		return nil
	}
	path := func() (string, bool) { return ftpRandPaths[rng.IntN(len(ftpRandPaths))], rng.IntN(3) != 0 }
	var ops []ftpRandOp
	for len(ops) < n {
		kind := pick()
		o := ftpRandOp{kind: kind}
		switch kind {
		case "stor", "appe", "reststor":
			o.path, o.abs = path()
			if rng.IntN(8) != 0 {
				o.data = fmt.Sprintf("%c%02d", 'A'+rune(len(ops)%26), len(ops))[:1+rng.IntN(3)]
			}
		case "retr", "restretr", "dele", "mkd", "rmd", "rnfr", "size", "mdtm", "mdtmset", "mfmt", "chmod", "mlst":
			o.path, o.abs = path()
		case "rename", "rnto":
			o.path, o.abs = path()
			o.path2, o.abs2 = path()
		case "stat":
			// Directories only: vsftpd's STAT of a file or link lists
			// the links to that name instead (see vsftpdStat).
			o.path, o.abs = ftpRandStatDirs[rng.IntN(len(ftpRandStatDirs))], rng.IntN(3) != 0
		case "cwd", "list", "nlst", "mlsd":
			if rng.IntN(2) == 0 {
				o.path, o.abs = ftpRandDirs[rng.IntN(len(ftpRandDirs))], rng.IntN(3) != 0
			} else {
				o.path, o.abs = path()
			}
			if kind == "list" {
				o.mode = []string{"", "", "-a", "-l"}[rng.IntN(4)]
				if rng.IntN(6) == 0 {
					o.path = "" // the working directory
				}
			}
		case "abortstor":
			o.path, o.abs = "z", true
			o.data = "partial data"
		case "type":
			o.mode = []string{"A", "I"}[rng.IntN(2)]
		case "searchonly":
			o.kind = "chmod"
			// By its absolute path, within the run's directory: never
			// the user's root, which later runs need.
			o.path, o.abs = []string{".", "d", "x"}[rng.IntN(3)], true
			o.mode = ftpRandSearchModes[rng.IntN(len(ftpRandSearchModes))]
		}
		switch kind {
		case "reststor", "restretr", "rest":
			o.n = []int64{0, 1, 3, 5, 20}[rng.IntN(5)]
		case "chmod":
			o.mode = ftpRandModes[rng.IntN(len(ftpRandModes))]
		}
		ops = append(ops, o)
	}
	return ops
}

// ftpRandSide is one server of TestFTPRandom: its ftpSide's session A is
// the run's session.
type ftpRandSide struct {
	*ftpSide
	uid, gid int
}

// exec runs o on session A of s, in the run's directory root, and shows
// the answers.
func (o ftpRandOp) exec(s *ftpRandSide, root string) string {
	cl := o.cmds(root)
	f := s.ftpSide
	put := func(line string) string {
		reps, _, err := f.a.transfer(line, append([]byte{}, o.data...))
		return xfer(reps, nil, err, exact, false)
	}
	get := func(line string) string {
		reps, data, err := f.a.transfer(line, nil)
		return xfer(reps, data, err, exact, true)
	}
	switch o.kind {
	case "stor", "appe":
		return put(cl[0])
	case "reststor":
		return f.c(cl[0], exact) + " " + put(cl[1])
	case "retr":
		return get(cl[0])
	case "restretr":
		return f.c(cl[0], exact) + " " + get(cl[1])
	case "rest", "dele", "rmd", "cwd", "rnfr", "rnto", "cdup", "mdtmset", "chmod", "type":
		return f.c(cl[0], exact)
	case "mkd", "pwd":
		return f.c(cl[0], quoted)
	case "rename":
		return f.c(cl[0], exact) + " " + f.c(cl[1], exact)
	case "size":
		return f.c(cl[0], text)
	case "mdtm":
		return f.c(cl[0], mdtmText)
	case "mfmt":
		if f.name == "vsftpd" { // no MFMT: MDTM with a time is what it has
			return f.c(strings.Replace(cl[0], "MFMT", "MDTM", 1), exact)
		}
		return f.c(cl[0], exact)
	case "list":
		return dropLinksByTarget(f.list(cl[0], false), o.path, o.sameFileAs(s, root))
	case "nlst":
		return nlstOnlyItself(f.list(cl[0], false), ftpArg(root, o.path, o.abs))
	case "stat":
		return dropLinksByTarget(f.c(cl[0], statLines), o.path, o.sameFileAs(s, root))
	case "mlsd":
		return s.mlsd(ftpArg(root, o.path, o.abs))
	case "mlst":
		return s.mlst(ftpArg(root, o.path, o.abs))
	case "abortstor":
		p := ftpArg(root, o.path, o.abs)
		return f.resetTransfer("STOR "+p, []byte(o.data)) + " " + f.c("SIZE "+p, text) + " " + f.c("DELE "+p, exact)
	case "abortretr":
		return f.resetTransfer("RETR /big.bin", nil)
	case "age":
		// Not drawn: a repro sequence's way to give a directory an old
		// time, which no FTP command of vsftpd's can.
		old := time.Unix(tMtime, 0)
		if err := os.Chtimes(filepath.Join(f.dir, root, o.path), old, old); err != nil {
			return "error: " + err.Error()
		}
		return "OK"
	}
	return "unknown operation " + o.kind
}

// dropLinksByTarget leaves out of LIST's answer the links to p's last
// component listed besides it: vsftpd's LIST of a file lists the links in
// its directory that lead to it too (LIST /d/f shows "g -> f", and "l ->
// g" where g -> f: TestFTPRandom seed 43 at 150 steps), which no client
// asks for (a vsftpd quirk; upgate lists the file alone). same, if not
// nil, reports whether the entry name of p's directory leads to p's file
// on the server's disk.
func dropLinksByTarget(answer, p string, same func(name string) bool) string {
	head, list, ok := strings.Cut(answer, " [")
	if !ok || p == "" || !strings.HasSuffix(list, "]") {
		return answer
	}
	suffix := fmt.Sprintf(" -> %s\"", path.Base(p))
	var keep []string
	for _, e := range strings.Split(strings.TrimSuffix(list, "]"), "; ") {
		name, _, _ := strings.Cut(e, "\" ")
		link, _, isLink := strings.Cut(strings.TrimPrefix(name, "\""), " -> ")
		if strings.HasSuffix(name+"\"", suffix) || isLink && same != nil && same(link) {
			continue
		}
		keep = append(keep, e)
	}
	return head + " [" + strings.Join(keep, "; ") + "]"
}

// sameFileAs returns, for a path p under the run's directory root (abs),
// whether an entry of p's directory on s's disk leads to p's file; nil
// for a path relative to the working directory.
func (o ftpRandOp) sameFileAs(s *ftpRandSide, root string) func(name string) bool {
	if !o.abs {
		return nil
	}
	dir := filepath.Join(s.dir, root, path.Dir(o.path))
	return func(name string) bool {
		want, err := os.Stat(filepath.Join(s.dir, root, o.path))
		if err != nil || !want.Mode().IsRegular() {
			return false
		}
		got, err := os.Stat(filepath.Join(dir, name))
		return err == nil && os.SameFile(want, got)
	}
}

// nlstOnlyItself is NLST's answer with only the argument arg when it is
// listed (arg is a file): vsftpd's NLST of a file lists the links to it
// in its directory too, as LIST does (see dropLinksByTarget).
func nlstOnlyItself(answer, arg string) string {
	self := fmt.Sprintf(" %q", arg)
	if strings.Contains(answer+" ", self+" ") {
		head, _, _ := strings.Cut(answer, " ")
		return head + self
	}
	return answer
}

// mlsd shows MLSD p's entries as mlsxEntry shows them, or "error"; on
// vsftpd, which has no MLSD, the entries of STAT p/ but . and .. (the
// slash follows a link, as MLSD does), or "error" when STAT lists no
// "." (p is no directory it can read).
func (s *ftpRandSide) mlsd(p string) string {
	f := s.ftpSide
	if f.name == "vsftpd" {
		r, err := f.a.cmd("STAT " + strings.TrimSuffix(p, "/") + "/")
		if err != nil {
			return "error: " + err.Error()
		}
		entries, dir := statEntries(r)
		if !dir {
			return "error"
		}
		return "OK " + showEntries(entries)
	}
	reps, data, err := f.a.transfer("MLSD "+p, nil)
	if err != nil {
		return "error: " + err.Error()
	}
	if len(reps) < 2 || reps[1].Code/100 != 2 {
		return "error"
	}
	var l []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimRight(line, "\r"); line == "" {
			continue
		}
		if e, ok := mlsxEntry(line); ok {
			l = append(l, e)
		}
	}
	return "OK " + showEntries(l)
}

// mlst shows MLST p's entry (without its name), or "error"; on vsftpd,
// which has no MLST, the entry STAT p shows (vsftpdStat), through links
// as upgate's MLST follows them.
func (s *ftpRandSide) mlst(p string) string {
	f := s.ftpSide
	if f.name == "vsftpd" {
		for hop := 0; hop < 8; hop++ {
			e, target, err := s.vsftpdStat(p)
			switch {
			case err != nil:
				return "error: " + err.Error()
			case e == "":
				return "error"
			case target == "":
				return "OK " + e
			case strings.HasPrefix(target, "/"):
				return "OK link to an absolute path"
			}
			p = path.Join(path.Dir(p), target)
		}
		return "error"
	}
	r, err := f.a.cmd("MLST " + p)
	if err != nil {
		return "error: " + err.Error()
	}
	if r.Code != 250 || len(r.Lines) < 3 {
		return "error"
	}
	e, ok := mlsxEntry(r.Lines[1])
	if !ok {
		return fmt.Sprintf("unparsed %q", r.Lines[1])
	}
	_, e, _ = strings.Cut(e, " ") // the name: MLST gives the path
	return "OK " + e
}

// vsftpdStat is p's own entry (lsEntry, without its name) and a link's
// target, from the listing of its directory that STAT dir/ shows (its
// "." line for p's last component "." or ".."); e is empty when there is
// none. vsftpd's STAT of a file or link is no help: it lists the entries
// of the directory whose link target has the file's name.
func (s *ftpRandSide) vsftpdStat(p string) (e, target string, err error) {
	dir, base := path.Split(p)
	if base == "." || base == ".." {
		dir, base = p+"/", "."
	} else if dir == "" {
		dir = "./"
	}
	r, err := s.a.cmd("STAT " + dir)
	if err != nil || r.Code != 213 || len(r.Lines) < 2 {
		return "", "", err
	}
	for _, line := range r.Lines[1 : len(r.Lines)-1] {
		name, entry, ok := lsEntry(line)
		if !ok || name != base {
			continue
		}
		if entry == "link" {
			m := listLine.FindStringSubmatch(strings.TrimLeft(strings.TrimRight(line, "\r"), " "))
			_, target, _ = strings.Cut(m[7], " -> ")
		}
		return entry, target, nil
	}
	return "", "", nil
}

// statEntries reads a STAT reply's ls lines: the entries (with their
// names) but . and .., and whether "." was one (a directory).
func statEntries(r ftpReply) (entries []string, dir bool) {
	if r.Code != 213 || len(r.Lines) < 2 {
		return nil, false
	}
	for _, line := range r.Lines[1 : len(r.Lines)-1] {
		name, e, ok := lsEntry(line)
		switch {
		case !ok:
			entries = append(entries, fmt.Sprintf("unparsed %q", line))
		case name == ".":
			dir = true
		case name != "..":
			entries = append(entries, fmt.Sprintf("%q %s", name, e))
		}
	}
	return entries, dir
}

func showEntries(l []string) string {
	sort.Strings(l)
	return "[" + strings.Join(l, "; ") + "]"
}

// lsEntry reads an ls -l line as the facts MLSx and ls agree on: type,
// mode (not a link's), size (a file's) and date ("now" within ten
// minutes).
func lsEntry(line string) (name, entry string, ok bool) {
	m := listLine.FindStringSubmatch(strings.TrimLeft(strings.TrimRight(line, "\r"), " "))
	if m == nil {
		return "", "", false
	}
	name = m[7]
	typ := map[byte]string{'-': "file", 'd': "dir", 'l': "link"}[m[1][0]]
	if typ == "" {
		typ = "other"
	}
	if typ == "link" {
		name, _, _ = strings.Cut(name, " -> ")
	}
	size, _ := strconv.ParseInt(m[5], 10, 64)
	date, _, _ := strings.Cut(canonListTime(m[6]), "T")
	return name, factEntry(typ, m[1][1:], size, date), true
}

// mlsxEntry reads an MLSx line ("Type=file;Size=5;Modify=...;UNIX.mode=0644; name")
// as lsEntry shows an ls line, the name first; cdir and pdir entries are
// left out.
func mlsxEntry(line string) (string, bool) {
	facts, name, ok := strings.Cut(strings.TrimLeft(line, " "), " ")
	if !ok {
		return fmt.Sprintf("unparsed %q", line), true
	}
	var typ, mode, date string
	var size int64
	for _, f := range strings.Split(facts, ";") {
		k, v, _ := strings.Cut(f, "=")
		switch strings.ToLower(k) {
		case "type":
			switch t := strings.ToLower(v); t {
			case "cdir", "pdir":
				return "", false
			case "os.unix=symlink", "os.unix=slink":
				typ = "link"
			case "file", "dir":
				typ = t
			default:
				typ = "other"
			}
			if strings.HasPrefix(strings.ToLower(f), "type=os.unix=") {
				typ = "link"
			}
		case "size":
			size, _ = strconv.ParseInt(v, 10, 64)
		case "unix.mode":
			if m, err := strconv.ParseUint(v, 8, 32); err == nil {
				mode = modeLetters(uint32(m))
			}
		case "modify":
			if t, err := time.Parse("20060102150405", v[:min(len(v), 14)]); err == nil {
				if d := time.Since(t); d < 10*time.Minute && d > -10*time.Minute {
					date = "now"
				} else {
					date = t.Format("2006-01-02")
				}
			}
		}
	}
	return fmt.Sprintf("%q %s", name, factEntry(typ, mode, size, date)), true
}

func factEntry(typ, mode string, size int64, date string) string {
	switch typ {
	case "link":
		return "link"
	case "file":
		return fmt.Sprintf("file %s size=%d %s", mode, size, date)
	}
	return fmt.Sprintf("%s %s %s", typ, mode, date)
}

// modeLetters is ls's rwxr-xr-x for permission and special bits.
func modeLetters(m uint32) string {
	b := []byte("rwxrwxrwx")
	for i := range b {
		if m&(1<<(8-i)) == 0 {
			b[i] = '-'
		}
	}
	special := func(bit uint32, i int, lower byte) {
		if m&bit == 0 {
			return
		}
		if b[i] == 'x' {
			b[i] = lower
		} else {
			b[i] = lower - 'a' + 'A'
		}
	}
	special(0o4000, 2, 's')
	special(0o2000, 5, 's')
	special(0o1000, 8, 't')
	return string(b)
}

// rowCwdRemoved is deliberateDiffs' row for a working directory removed
// under the session: the servers then work in different directories.
const rowCwdRemoved = "MKD /cwr, CWD /cwr, RMD /cwr, PWD, MKD /cwr, STOR f, CWD /, SIZE /cwr/f, DELE /cwr/f, RMD /cwr"

// rowRnfrNow is deliberateDiffs' row for an RNFR of a relative name
// whose working directory changed before the RNTO (whyRnfrNow).
const rowRnfrNow = "CWD /d, RNFR f1b (relative), CDUP, RNTO /d/f1c, RNFR /d/f1c, RNTO /d/f1b"

// rowDirTime is deliberateDiffs' row for a directory's time set by MDTM
// or MFMT (whyDirTime).
const rowDirTime = "MKD /dt, MDTM with a time on it (a directory), RMD /dt"

// dirTime is a directory's time as the answers show it: in an ls line or
// an MLSD entry ("d" drwxr-xr-x 2004-01-09, "d" dir rwxr-xr-x now; the
// name in $1), an MLST answer (dir rwxr-xr-x now) and a tree entry (dir
// 0755 mtime=...).
var dirTime = regexp.MustCompile(`"([^"]*)" (d[-rwxsStT]{9}|dir [-rwxsStT]{9}) (now|\d{4}-\d\d-\d\d)|\b(dir [-rwxsStT]{9}) (now|\d{4}-\d\d-\d\d)|\b(dir \d{4}) mtime=\S+`)

// withoutDirTimes is an answer without the times of the directories set
// holds (their paths in the run, and so their names): own is whether
// the answer is about one of them itself (MLST, a tree entry).
func withoutDirTimes(answer string, set map[string]bool, own bool) string {
	names := map[string]bool{}
	for p := range set {
		names[path.Base(p)] = true
	}
	return dirTime.ReplaceAllStringFunc(answer, func(m string) string {
		sub := dirTime.FindStringSubmatch(m)
		switch {
		case sub[1] != "" || sub[2] != "":
			if names[sub[1]] {
				return `"` + sub[1] + `" ` + sub[2]
			}
		case sub[4] != "":
			if own {
				return sub[4]
			}
		case sub[6] != "":
			if own {
				return sub[6]
			}
		}
		return m
	})
}

// ftpRandAfterDirTime names whyDirTime's row for a difference that is
// only in the times of directories whose times the run set (set), or
// another row once they are taken away.
func ftpRandAfterDirTime(o ftpRandOp, facts ftpRandFacts, set map[string]bool, ref, ug string) string {
	own := set[facts.real]
	ref, ug = withoutDirTimes(ref, set, own), withoutDirTimes(ug, set, own)
	if ref == ug {
		return rowDirTime
	}
	return ftpRandDeliberate(o, facts, ref, ug)
}

// relToRun is the server path p relative to the run's directory root,
// as dirTimes keys it ("d/e" in it, "../x" out of it).
func relToRun(root, p string) string {
	if rel, err := filepath.Rel(root, p); err == nil {
		return filepath.ToSlash(rel)
	}
	return strings.TrimPrefix(p, root+"/")
}

// ftpRandTrack follows what vsftpd's session holds between commands (its
// working directory, TYPE, a REST not yet used), from its answers and its
// disk, so that ftpRandDeliberate can tell what a path named when a
// command ran: the reasons of some rows depend on it (a directory, one its
// user may not read or search).
type ftpRandTrack struct {
	disk string // vsftpd's "/" on disk
	cwd  string // its working directory, as a server path
	rnfr string // the server path of an RNFR answered 350
	// rnfrCwd is the working directory when an RNFR of a relative name
	// was answered 350, or "": vsftpd resolves that name again at the
	// RNTO (whyRnfrNow).
	rnfrCwd string
	ascii   bool  // TYPE A
	rest    int64 // a REST answered 350 and not yet used by a transfer
	// moved is the last operation's rename that vsftpd made (server
	// paths, directories' links resolved), or zero.
	moved [2]string
}

// ftpRandFacts are what ftpRandTrack knew before an operation ran.
type ftpRandFacts struct {
	dir       bool        // the path, links followed, was a directory
	dirMode   fs.FileMode // and its permission bits
	exists    bool        // the path named something (a link counts)
	real      string      // where the path led, links followed, in the run's directory
	cwdSearch bool        // the working directory could be searched
	// aboveCwdUnsearchable: a directory above the working directory
	// (below the user's /) cannot be searched by its owner.
	aboveCwdUnsearchable bool
	// parentSearch: the directory holding the path (links followed)
	// could be searched, or there is none.
	parentSearch bool
	// parentRead: that directory could be read, or there is none.
	parentRead bool
	// moveUpUnread: a rename moves a directory that is, or holds, one
	// its user may not read to fewer directories below the root.
	moveUpUnread bool
	asciiRest    bool // TYPE A with a REST of more than 0 pending
	// rnfrElsewhere: an RNTO after an RNFR of a relative name answered
	// in another working directory (whyRnfrNow).
	rnfrElsewhere bool
	// from and to are a rename's two paths (RNFR's, RNTO's) as server
	// paths with their directories' links resolved, as the working
	// directory is held.
	from, to string
	// cwdLinkElsewhere: the working directory holds a symbolic link
	// with the path's last name, whose target is there and has another
	// name (vsftpd's listing of the path matches that target's name), or
	// leads nowhere (a loop: seed 172 at 150 steps, a link moved to the
	// user's / onto its own target's name).
	cwdLinkElsewhere bool
	// cwdLinksToName: the names of the symbolic links in the working
	// directory, other than the path's last name, whose targets' last
	// names are the path's (a listing's), which vsftpd's listing of the
	// path's directory matches too (seed 6588 at 150 steps).
	cwdLinksToName map[string]bool
}

// server is p as the session names it: absolute under root, or relative
// to the working directory.
func (k *ftpRandTrack) server(p string, abs bool, root string) string {
	if abs {
		return ftpArg(root, p, true)
	}
	return path.Join(k.cwd, p)
}

func (k *ftpRandTrack) facts(o ftpRandOp, root string) ftpRandFacts {
	f := ftpRandFacts{asciiRest: k.ascii && k.rest > 0, parentSearch: true, parentRead: true}
	if fi, err := os.Stat(filepath.Join(k.disk, k.cwd)); err == nil {
		f.cwdSearch = fi.Mode().Perm()&0o100 != 0
	}
	for d := path.Dir(k.cwd); d != "/" && d != "."; d = path.Dir(d) {
		if fi, err := os.Stat(filepath.Join(k.disk, d)); err == nil && fi.Mode().Perm()&0o100 == 0 {
			f.aboveCwdUnsearchable = true
		}
	}
	if o.path != "" {
		disk := filepath.Join(k.disk, k.server(o.path, o.abs, root))
		if fi, err := os.Stat(disk); err == nil && fi.IsDir() {
			f.dir, f.dirMode = true, fi.Mode().Perm()
		}
		if fi, err := os.Stat(filepath.Dir(disk)); err == nil {
			f.parentSearch = fi.Mode().Perm()&0o100 != 0
			f.parentRead = fi.Mode().Perm()&0o400 != 0
		}
		_, err := os.Lstat(disk)
		f.exists = err == nil
		if real, err := filepath.EvalSymlinks(disk); err == nil {
			if rel, err := filepath.Rel(filepath.Join(k.disk, root), real); err == nil {
				f.real = filepath.ToSlash(rel)
			}
		}
	}
	switch o.kind {
	case "rnfr", "rename":
		f.from = k.realParent(k.server(o.path, o.abs, root))
	}
	switch o.kind {
	case "rnto", "rename":
		f.to = k.realParent(k.server(o.path2, o.abs2, root))
		src := f.from
		if o.kind == "rnto" {
			src = k.rnfr
		}
		depth := func(p string) int { return strings.Count(path.Clean("/"+p), "/") }
		f.moveUpUnread = src != "" && depth(f.to) < depth(src) && unreadableDirIn(filepath.Join(k.disk, src))
	}
	f.rnfrElsewhere = o.kind == "rnto" && k.rnfrCwd != "" && k.rnfrCwd != k.cwd
	if o.path != "" {
		link := filepath.Join(k.disk, k.cwd, path.Base(o.path))
		target, err := os.Readlink(link)
		_, serr := os.Stat(link)
		f.cwdLinkElsewhere = err == nil && (serr != nil || path.Base(target) != path.Base(o.path))
	}
	if o.kind == "list" && o.path != "" {
		ents, _ := os.ReadDir(filepath.Join(k.disk, k.cwd))
		for _, e := range ents {
			target, err := os.Readlink(filepath.Join(k.disk, k.cwd, e.Name()))
			if err == nil && e.Name() != path.Base(o.path) && path.Base(target) == path.Base(o.path) {
				if f.cwdLinksToName == nil {
					f.cwdLinksToName = map[string]bool{}
				}
				f.cwdLinksToName[e.Name()] = true
			}
		}
	}
	return f
}

// realParent is the server path sp with its directory's links resolved
// on disk (sp's own name stays: it may be a link).
func (k *ftpRandTrack) realParent(sp string) string {
	sp = path.Clean(sp)
	real, err := filepath.EvalSymlinks(filepath.Join(k.disk, path.Dir(sp)))
	if err != nil {
		return sp
	}
	rel, err := filepath.Rel(k.disk, real)
	if err != nil {
		return sp
	}
	return path.Join("/", filepath.ToSlash(rel), path.Base(sp))
}

// after takes in vsftpd's answer to o.
func (k *ftpRandTrack) after(o ftpRandOp, facts ftpRandFacts, root, ref string) {
	k.moved = [2]string{}
	follow := func(from, to string) {
		k.moved = [2]string{from, to}
		if k.cwd == from || strings.HasPrefix(k.cwd, from+"/") {
			k.cwd = path.Join(to, strings.TrimPrefix(k.cwd, from))
		}
	}
	switch o.kind {
	case "cwd":
		if ref == "250" {
			k.cwd = path.Clean(k.server(o.path, o.abs, root))
			if real, err := filepath.EvalSymlinks(filepath.Join(k.disk, k.cwd)); err == nil {
				if rel, err := filepath.Rel(k.disk, real); err == nil {
					k.cwd = path.Join("/", filepath.ToSlash(rel))
				}
			}
		}
	case "cdup":
		if ref == "250" {
			k.cwd = path.Dir(k.cwd)
		}
	case "pwd":
		if q, ok := strings.CutPrefix(ref, `257 "`); ok {
			k.cwd = strings.TrimSuffix(q, `"`)
		}
	case "rnfr":
		k.rnfr, k.rnfrCwd = "", ""
		if ref == "350" {
			k.rnfr = facts.from
			if !o.abs {
				k.rnfrCwd = k.cwd
			}
		}
	case "rnto":
		if ref == "250" && k.rnfr != "" && (k.rnfrCwd == "" || k.rnfrCwd == k.cwd) {
			follow(k.rnfr, facts.to)
		}
		k.rnfr, k.rnfrCwd = "", ""
	case "rename":
		if ref == "350 250" {
			follow(facts.from, facts.to)
		}
	case "type":
		if ref == "200" {
			k.ascii = o.mode == "A"
		}
	case "rest":
		if ref == "350" {
			k.rest = o.n
		}
	case "stor", "appe", "reststor", "retr", "restretr", "abortstor", "abortretr":
		k.rest = 0
	}
	// vsftpd keeps an RNFR across other commands (NOOP, SIZE, PWD, CWD,
	// CDUP: TestFTPDifferential's rowRnfrNow) until an RNTO; one it did
	// not keep answers 503, and is followed by nothing here.
}

// ftpRandDeliberate names the row of deliberateDiffs that explains a
// difference in o's answers, or "": the row's reason covers the answer
// here, at another path than the row's step names. A difference that is
// vsftpd's quirk, not a choice of upgate's, is named "vsftpd: " and why.
func ftpRandDeliberate(o ftpRandOp, facts ftpRandFacts, ref, ug string) string {
	switch {
	case (o.kind == "mdtmset" || o.kind == "mfmt") && facts.dir && ref == "550" && ug == "213":
		return rowDirTime
	case o.kind == "retr" && facts.asciiRest && ref == "550" && strings.HasPrefix(ug, "1xx/2"):
		return "TYPE A, REST 2, RETR /d/f1 (a resumed download in ASCII mode), TYPE I"
	case (o.kind == "list" || o.kind == "nlst" || o.kind == "stat") && facts.dir && facts.dirMode&0o500 != 0o500 &&
		(ug == "4xx" || ug == "450"):
		return "perm: LIST /perm/closed (0000)"
	case (o.kind == "list" || o.kind == "nlst" || o.kind == "stat") && !facts.parentSearch &&
		(ug == "4xx" || ug == "450"):
		// A name in a directory whose entries cannot be examined: vsftpd
		// lists what its readdir matches (seeds 1320, 1416), a directory
		// it cannot open too (seed 6343 at 150 steps).
		return "perm: LIST /perm/closed (0000)"
	case o.kind == "mlsd" && facts.dir && facts.dirMode&0o100 == 0 && ref == "error" && ug == "OK []":
		// vsftpd has no MLSD: its stand-in, STAT of the directory,
		// cannot show the "." of one its user may not search.
		return "vsftpd: no MLSD, and STAT, its stand-in, shows no \".\" for a directory its user may not search"
	case facts.rnfrElsewhere:
		return rowRnfrNow
	case !o.abs && o.kind != "cdup" && facts.aboveCwdUnsearchable && refusedLast(ug):
		// upgate looks a name in the working directory up from the
		// user's root, through a directory above it whose search bit
		// was taken away; vsftpd's process works inside it (seed 5404;
		// REST then STOR, seed 6748 at 150 steps).
		return rowCwdRemoved
	case o.kind == "cdup" && facts.aboveCwdUnsearchable && ref == "250" && ug == "550":
		// The same for CDUP: vsftpd's chdir("..") asks only the working
		// directory and its parent, upgate looks the parent up from the
		// user's root (seed 6217 at 150 steps).
		return rowCwdRemoved
	case o.kind == "cdup" && !facts.cwdSearch && ref == "550" && ug == "250":
		// CDUP leaves a directory whose search bit was taken away: ".."
		// is the gateway's text (whyDotDot).
		return "NLST /d/f1/.. (.. after a file)"
	case (o.kind == "list" || o.kind == "nlst" || o.kind == "stat") && !facts.dir && facts.exists && (!facts.cwdSearch || facts.aboveCwdUnsearchable) &&
		(ref == "1xx/2xx []" || ref == "1xx/2xx " || ref == "213 []") &&
		(listsOnly(ug, path.Base(o.path)) || listsOnly(strings.Replace(ug, "213 [", "1xx/2xx [", 1), path.Base(o.path))):
		// STAT's over the control connection too (seed 3245), and where
		// a directory above the working directory cannot be searched
		// (seed 6621 at 150 steps: the working directory /x/a, x 000).
		return "vsftpd: a listing of a file is empty while the working directory cannot be searched"
	case (o.kind == "list" || o.kind == "nlst" || o.kind == "stat") && !facts.dir && facts.exists && facts.parentSearch &&
		!facts.parentRead && (ref == "1xx/2xx []" || ref == "1xx/2xx " || ref == "213 []") &&
		(listsOnly(ug, path.Base(o.path)) || listsOnly(strings.Replace(ug, "213 [", "1xx/2xx [", 1), path.Base(o.path))):
		// vsftpd lists a file's directory for the file's name, which a
		// directory its user may search but not read (0311, 0100) does
		// not give; upgate, as ls -l, looks at the file itself.
		return "vsftpd: a listing of a file is empty while its directory cannot be read"
	case o.kind == "mlst" && ref == "error" && strings.HasPrefix(ug, "OK ") && facts.parentSearch && !facts.parentRead:
		// vsftpd has no MLST: its stand-in, STAT of the path, lists the
		// path's directory for it (as above).
		return "vsftpd: no MLST, and STAT, its stand-in, shows nothing in a directory its user may not read"
	case (o.kind == "rnto" || o.kind == "rename") && facts.moveUpUnread && strings.HasSuffix(ref, "250") && strings.HasSuffix(ug, "550"):
		return rowMoveUpUnread
	case (o.kind == "list" || o.kind == "nlst" || o.kind == "stat") && !facts.dir && facts.cwdLinkElsewhere &&
		(ref == "1xx/2xx []" || ref == "1xx/2xx " || ref == "213 []") &&
		(listsOnly(ug, path.Base(o.path)) || listsOnly(strings.Replace(ug, "213 [", "1xx/2xx [", 1), path.Base(o.path))):
		// vsftpd looks the file's name up in the working directory, not
		// in the path's: where a link there has that name, it lists the
		// path's directory for the link's target's name (seed 1907), or
		// for nothing where the link leads nowhere (seed 172).
		return "vsftpd: a listing of dir/name is empty where the working directory holds a link named name to another name or to nothing"
	case o.kind == "list" && !facts.dir && len(facts.cwdLinksToName) > 0 && ref != ug &&
		withoutEntries(ref, func(name string) bool { return facts.cwdLinksToName[name] }) == ug:
		// The same the other way: vsftpd matches each name in the path's
		// directory as the working directory resolves it, so an entry
		// named like a link there that leads to the path's name is
		// listed too (seed 6588 at 150 steps: LIST /ROOT/a listed
		// /ROOT/ld, a link to d, where the working directory holds ld,
		// a link to a).
		return "vsftpd: a listing of dir/name also lists the entries named like a link in the working directory to name"
	}
	switch o.kind {
	case "list", "stat":
		// vsftpd's LIST (and STAT) -a lists . and ..; upgate's never
		// (whyDotfiles).
		if withoutDots(ref) == ug || withoutDots(ref) == strings.Replace(ug, "212 [", "213 [", 1) {
			if o.kind == "list" {
				return "LIST -a /fix"
			}
			return "STAT /fix (over the control connection)"
		}
		// vsftpd's LIST of a link names nothing when the link's target
		// has another name: it matches the name it looks for against the
		// target (see dropLinksByTarget).
		if o.path != "" && (ref == "1xx/2xx []" || ref == "213 []") && isOneLink(ug, path.Base(o.path)) {
			return "vsftpd: the LIST of a link names the link only if its target has the same name"
		}
	case "nlst":
		// As LIST's: vsftpd names nothing for a link that upgate (and
		// the tree) holds.
		if ref == "1xx/2xx " && o.path != "" && strings.HasPrefix(ug, "1xx/2xx ") && !strings.Contains(ug[8:], `" "`) &&
			(strings.HasSuffix(ug, "/"+path.Base(o.path)+`"`) || ug == `1xx/2xx "`+o.path+`"`) {
			return "vsftpd: the LIST of a link names the link only if its target has the same name"
		}
	}
	// ".." taken away with the name before it, as text (whyDotDot):
	// upgate answers for the path without the two.
	if strings.Contains(o.path, "..") && ref != ug {
		return "NLST /d/f1/.. (.. after a file)"
	}
	switch o.kind {
	case "stat":
		// vsftpd's STAT of a missing name that is also the working
		// directory's shows that directory's "." line (its parent's
		// name, the ".." line: seed 2932).
		if (strings.HasPrefix(ref, `213 ["." d`) || strings.HasPrefix(ref, `213 [".." d`)) && !strings.Contains(ref, "; ") && ug == "450" {
			return "vsftpd: STAT of a missing name that is the working directory's shows its \".\" line"
		}
		// STAT of a path is its listing over the control connection:
		// vsftpd's empty one of a missing path, upgate's 450, for the
		// reason LIST of a missing path is an error (whyMissingList; the
		// table has no STAT row of its own).
		if ref == "213 []" && ug == "450" {
			return "LIST /missing"
		}
		// vsftpd's 213 lists . and ..; upgate's 212 does not (whyDotfiles).
		rl, rok := strings.CutPrefix(ref, "213 [")
		ul, uok := strings.CutPrefix(ug, "212 [")
		if rok && uok {
			var keep []string
			for _, e := range strings.Split(strings.TrimSuffix(rl, "]"), "; ") {
				if !strings.HasPrefix(e, `"." `) && !strings.HasPrefix(e, `".." `) {
					keep = append(keep, e)
				}
			}
			if strings.Join(keep, "; ") == strings.TrimSuffix(ul, "]") {
				return "STAT /fix (over the control connection)"
			}
		}
	case "list", "nlst":
		// vsftpd's empty listing of a missing path, a file taken for a
		// directory or one it cannot read; upgate's error (whyMissingList).
		if (ref == "1xx/2xx []" || ref == "1xx/2xx ") && ug == "4xx" {
			return "LIST /missing"
		}
		// The same with -a: vsftpd's listing of nothing but the working
		// directory's "." (seeds 644, 673: LIST -a of a missing name).
		if strings.HasPrefix(ref, `1xx/2xx ["." d`) && !strings.Contains(ref, "; ") && ug == "4xx" {
			return "LIST /missing"
		}
	case "restretr":
		// REST and RETR in ASCII mode: vsftpd's 550, upgate's resumed
		// download (whyASCIIRest).
		if strings.HasPrefix(ref, "350 5") && strings.HasPrefix(ug, "350 1xx/2") {
			return "TYPE A, REST 2, RETR /d/f1 (a resumed download in ASCII mode), TYPE I"
		}
	case "abortretr":
		// The same after a REST of its own (the download is cut short
		// on purpose: 426).
		if ref == "550" && ug == "1xx/426" {
			return "TYPE A, REST 2, RETR /d/f1 (a resumed download in ASCII mode), TYPE I"
		}
	case "abortstor":
		// vsftpd keeps the part that arrived; upgate commits nothing.
		if strings.HasPrefix(ref, "1xx/426 213 ") && strings.HasSuffix(ref, " 250") && ug == "1xx/426 550 550" {
			return "STOR /reset.bin, data connection reset"
		}
	case "stor", "appe", "reststor":
		// A refused upload into the directory of the session's last one:
		// upgate's refusal comes after a 150 (whyPostedOpen).
		// vsftpd's code (553) and upgate's (550) may differ: the row
		// compares the code after the 150 by its first digit.
		if i := strings.Index(ug, "1xx/5"); i >= 0 && len(ref) == i+3 && ref[:i] == ug[:i] && ref[i] == '5' && len(ug) == i+7 {
			return "STOR /d/dir2 (a directory) after an upload into /d"
		}
	}
	return ""
}

// withoutDots is a listing answer without its "." and ".." entries.
func withoutDots(answer string) string {
	return withoutEntries(answer, func(name string) bool { return name == "." || name == ".." })
}

// withoutEntries is a LIST answer without the entries whose names drop
// reports (an entry `"ld -> d" lrwxrwxrwx ...` is named ld).
func withoutEntries(answer string, drop func(name string) bool) string {
	head, list, ok := strings.Cut(answer, " [")
	if !ok {
		return answer
	}
	var keep []string
	for _, e := range strings.Split(strings.TrimSuffix(list, "]"), "; ") {
		name, _, _ := strings.Cut(strings.TrimPrefix(e, `"`), `" `)
		name, _, _ = strings.Cut(name, " -> ")
		if e != "" && !drop(name) {
			keep = append(keep, e)
		}
	}
	return head + " [" + strings.Join(keep, "; ") + "]"
}

// listsOnly reports whether a LIST or NLST answer lists one entry, named
// base (NLST: a path ending in it).
func listsOnly(answer, base string) bool {
	if l, ok := strings.CutPrefix(answer, "1xx/2xx ["); ok {
		return strings.HasPrefix(l, `"`+base+`" `) && !strings.Contains(l, "; ")
	}
	l, ok := strings.CutPrefix(answer, "1xx/2xx ")
	return ok && !strings.Contains(l, `" "`) && (l == `"`+base+`"` || strings.HasSuffix(l, `/`+base+`"`))
}

// isOneLink reports whether a listing answer lists one link, named base.
func isOneLink(answer, base string) bool {
	_, list, ok := strings.Cut(answer, " [")
	prefix := `"` + base + ` -> `
	return ok && !strings.Contains(list, "; ") && strings.HasPrefix(list, prefix) && strings.Contains(list, `" l`)
}

// ftpRandRunner runs sequences on both servers.
type ftpRandRunner struct {
	t       *testing.T
	ref, ug *ftpRandSide
	runs    int
	leaked  bool
}

func newFTPRandRunner(t *testing.T) *ftpRandRunner {
	t.Helper()
	srv := refserver.StartVSFTPD(t)
	ref := &ftpRandSide{ftpSide: &ftpSide{name: "vsftpd", addr: srv.Addr, user: srv.User, pass: srv.Password, dir: srv.Dir}, uid: srv.UID, gid: srv.GID}
	u := startUpgate(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = config.PortRange{}
	})
	ug := &ftpRandSide{ftpSide: &ftpSide{name: "upgate", addr: u.Srv.FTPAddr.String(), user: "alice", pass: gwtest.Users["alice"], dir: u.UserDir("alice")},
		uid: agenttest.NonRootUID, gid: agenttest.NonRootUID}
	ug.idle = func() { u.AgentIdle(&softTB{TB: t}) }
	// A file large enough that a download reset after its first 4 KiB
	// is still under way (426), for abortretr.
	big := pattern(16<<20, 5)
	for _, s := range []*ftpRandSide{ref, ug} {
		p := filepath.Join(s.dir, "big.bin")
		if err := os.WriteFile(p, big, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, s.uid, s.gid); err != nil {
			t.Fatal(err)
		}
	}
	return &ftpRandRunner{t: t, ref: ref, ug: ug}
}

// seedFTPRand makes the run's directory dir: a ("alpha"), d, d/e ("echo
// data"), l -> a, ld -> d, dang -> nowhere, owned by uid/gid, the files
// with the mtime tMtime. d's stays the time of the run: an upload over
// d/e changes it on upgate, which replaces the file by a rename (atomic
// uploads), not on vsftpd, and that one difference would show in every
// later listing of the run (the sequence "dir-mtime-upload" of
// TestFTPRandomRepro shows it).
func seedFTPRand(dir string, uid, gid int) error {
	old := time.Unix(tMtime, 0)
	steps := []func() error{
		func() error { return os.MkdirAll(filepath.Join(dir, "d"), 0o755) },
		func() error { return os.WriteFile(filepath.Join(dir, "a"), []byte("alpha"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(dir, "d", "e"), []byte("echo data"), 0o644) },
		func() error { return os.Symlink("a", filepath.Join(dir, "l")) },
		func() error { return os.Symlink("d", filepath.Join(dir, "ld")) },
		func() error { return os.Symlink("nowhere", filepath.Join(dir, "dang")) },
		func() error { return os.Chtimes(filepath.Join(dir, "a"), old, old) },
		func() error { return os.Chtimes(filepath.Join(dir, "d", "e"), old, old) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	for _, p := range []string{"", "d", "a", "d/e", "l", "ld", "dang"} {
		if err := os.Lchown(filepath.Join(dir, p), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// login opens the run's session on s.
func (s *ftpRandSide) login() error {
	c, greet, err := dialRawFTP(s.addr)
	if err != nil {
		return err
	}
	if greet.Code != 220 {
		c.Close()
		return fmt.Errorf("greeting %d", greet.Code)
	}
	for _, l := range []struct {
		line string
		code int
	}{{"USER " + s.user, 331}, {"PASS " + s.pass, 230}, {"TYPE I", 200}} {
		if r, err := c.cmd(l.line); err != nil || r.Code != l.code {
			c.Close()
			return fmt.Errorf("%s: %v %v", strings.Fields(l.line)[0], r, err)
		}
	}
	s.a = c
	return nil
}

// quit ends the run's session and waits for the server to close it, so
// that whatever the session did is on disk.
func (s *ftpRandSide) quit() {
	if s.a == nil {
		return
	}
	_, _ = s.a.cmd("QUIT")
	_ = s.a.c.SetReadDeadline(time.Now().Add(ftpTimeout))
	_, _ = io.Copy(io.Discard, s.a.r)
	s.a.Close()
	s.a = nil
}

// outside moves what a run left in the user's "/" (a relative command
// after CDUP out of the run's directory) into a directory of its own,
// and returns it ("" if nothing was left).
func (s *ftpRandSide) outside(name string) string {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return ""
	}
	hold := filepath.Join(s.dir, ".outside-"+name)
	made := false
	for _, e := range entries {
		if e.Name() == "big.bin" || strings.HasPrefix(e.Name(), "run-") || strings.HasPrefix(e.Name(), ".outside-") {
			continue
		}
		if !made {
			if os.Mkdir(hold, 0o755) != nil {
				return ""
			}
			made = true
		}
		_ = os.Rename(filepath.Join(s.dir, e.Name()), filepath.Join(hold, e.Name()))
	}
	if !made {
		return ""
	}
	return hold
}

// run seeds /run-name on both servers, runs ops on a fresh session of
// each, one operation at a time, and compares the answers and the trees
// (and what was left outside the run's directory). The directories are
// removed afterwards.
func (r *ftpRandRunner) run(name string, ops []ftpRandOp) randResult {
	r.runs++
	root := "/run-" + name
	sides := []*ftpRandSide{r.ref, r.ug}
	for _, s := range sides {
		dir := filepath.Join(s.dir, "run-"+name)
		_ = os.RemoveAll(dir)
		if err := seedFTPRand(dir, s.uid, s.gid); err != nil {
			r.t.Fatalf("%s: seeding %s: %v", s.name, dir, err)
		}
		if err := s.login(); err != nil {
			r.t.Fatalf("%s: login: %v", s.name, err)
		}
		// Relative paths start in the run's directory.
		if rep, err := s.a.cmd("CWD " + root); err != nil || rep.Code != 250 {
			r.t.Fatalf("%s: CWD %s: %v %v", s.name, root, rep, err)
		}
	}
	var res randResult
	norm := func(a string) string { return strings.ReplaceAll(a, `"`+root, `"/ROOT`) }
	track := ftpRandTrack{disk: r.ref.dir, cwd: root}
	dirTimes := map[string]bool{} // the directories whose times the run set (whyDirTime), in the run
	// apart: a deliberate difference left the servers apart (an RNTO
	// that renamed another file on each, whyRnfrNow; a CWD or CDUP that
	// one refused, whyDotDot), so that their trees and later answers
	// differ by it: every later difference without a row of its own is
	// put down to that row.
	apart := ""
	for i, o := range ops {
		facts := track.facts(o, root)
		ref := o.exec(r.ref, root)
		track.after(o, facts, root, ref)
		if from, to := track.moved[0], track.moved[1]; from != "" {
			// A directory whose time the run set keeps it under its new
			// name (seed 681), also out of the run's directory, as
			// "../name" (seed 2321).
			from, to = relToRun(root, from), relToRun(root, to)
			for _, d := range slices.Collect(maps.Keys(dirTimes)) {
				if d == from || strings.HasPrefix(d, from+"/") {
					delete(dirTimes, d)
					dirTimes[to+strings.TrimPrefix(d, from)] = true
				}
			}
		}
		a := randAnswer{ref: norm(ref), ug: norm(o.exec(r.ug, root))}
		res.ops = append(res.ops, a)
		if o.kind == "rmd" && a.ref == "250" && a.ug == "250" && apart == "" && track.realParent(track.server(o.path, o.abs, root)) == track.cwd {
			// vsftpd's working directory is its process's, now a removed
			// directory; upgate's its path (seed 5232).
			apart = rowCwdRemoved
		}
		if facts.rnfrElsewhere && apart == "" && (a.ref == "250" || a.ug == "250") {
			// Both may answer 250 and still rename two different files:
			// vsftpd takes the relative RNFR name in the working
			// directory of the RNTO (seed 4782: one made there since).
			apart = rowRnfrNow
		}
		if a.ref != a.ug {
			row := ftpRandDeliberate(o, facts, a.ref, a.ug)
			if row == "" && len(dirTimes) > 0 {
				row = ftpRandAfterDirTime(o, facts, dirTimes, a.ref, a.ug)
			}
			if row == rowDirTime && (o.kind == "mdtmset" || o.kind == "mfmt") && facts.dir {
				dirTimes[facts.real] = true
			}
			switch {
			case row == "" && apart != "":
				row = apart
			case row == rowRnfrNow, row == rowMoveUpUnread, row == rowCwdRemoved,
				row != "" && (o.kind == "cwd" || o.kind == "cdup") && (a.ref == "250") != (a.ug == "250"):
				// The servers now rename other files, hold other trees
				// (a directory moved up on vsftpd only: seed 2840), or
				// work in other directories (whyDotDot: seed 1323).
				apart = row
			}
			res.diffs = append(res.diffs, randDiff{index: i, op: o.String(), ref: a.ref, ug: a.ug, row: row})
		}
	}
	var trees, outs [2]map[string]treeEntry
	for i, s := range sides {
		s.quit()
		if s.idle != nil && !r.leaked {
			if msg := softly(s.idle); msg != "" {
				res.diffs = append(res.diffs, randDiff{index: -1, path: "(agent)", ref: "idle", ug: msg})
				r.leaked = true
				r.t.Log(r.describe(fmt.Sprintf("run %s left the agent busy: %s", name, msg), ops, res))
			}
		} else if s.idle != nil {
			time.Sleep(100 * time.Millisecond)
		}
		dir := filepath.Join(s.dir, "run-"+name)
		trees[i] = snapshot(r.t, dir)
		outs[i] = map[string]treeEntry{}
		if hold := s.outside(name); hold != "" {
			outs[i] = snapshot(r.t, hold)
			_ = os.RemoveAll(hold)
		}
		_ = os.RemoveAll(dir)
	}
	for _, d := range compareTrees("ftp", trees[0], trees[1], false) {
		var row string
		tp := strings.TrimPrefix(d.step, "tree ")
		if dirTimes[strings.Trim(tp, `"/`)] && withoutDirTimes(d.ref, dirTimes, true) == withoutDirTimes(d.upgate, dirTimes, true) {
			row = rowDirTime
		} else if apart != "" {
			row = apart
		}
		res.diffs = append(res.diffs, randDiff{index: -1, path: strings.TrimPrefix(d.step, "tree "), ref: d.ref, ug: d.upgate, row: row})
	}
	for _, d := range compareTrees("ftp", outs[0], outs[1], false) {
		var row string
		// The run's paths out of its directory, from the server's /, are
		// ../name in it (seed 1172: CWD .., MKD b, MFMT on b).
		out := "../" + strings.Trim(strings.TrimPrefix(d.step, "tree "), `"/`)
		if dirTimes[out] && withoutDirTimes(d.ref, dirTimes, true) == withoutDirTimes(d.upgate, dirTimes, true) {
			row = rowDirTime
		} else if apart != "" {
			row = apart
		}
		res.diffs = append(res.diffs, randDiff{index: -1, path: "(outside the run) " + strings.TrimPrefix(d.step, "tree "), ref: d.ref, ug: d.upgate, row: row})
	}
	return res
}

// describe shows a run's operations and answers (runText).
func (r *ftpRandRunner) describe(title string, ops []ftpRandOp, res randResult) string {
	return runText(title, ops, res, "vsftpd: ", "upgate: ")
}

// show runs ops as name and describes the run.
func (r *ftpRandRunner) show(title, name string, ops []ftpRandOp) string {
	return r.describe(title, ops, r.run(name, ops))
}

// minimise shrinks ops to a short sequence that still shows want (ddmin,
// at most 300 runs).
func (r *ftpRandRunner) minimise(seed uint64, ops []ftpRandOp, want randDiff) []ftpRandOp {
	if want.index >= 0 {
		ops = append([]ftpRandOp(nil), ops[:want.index+1]...)
	}
	return ddmin.Shrink(ops, 300, func(c []ftpRandOp) bool {
		return r.run(fmt.Sprintf("r%dm%d", seed, r.runs), c).has(want)
	})
}
