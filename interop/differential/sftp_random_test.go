package differential_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/internal/ddmin"
	"github.com/upgate/upgate/internal/refserver"
)

// TestSFTPRandom drives OpenSSH's sftp-server and upgate with the same
// seeded random sequences of SFTP operations on one session, over a small
// namespace, and compares every answer and the resulting trees. It finds
// what the hand-written steps of TestSFTPDifferential miss; it is skipped
// unless DIFF_RANDOM names the seeds:
//
//	DIFF_RANDOM=20          seeds 1..20
//	DIFF_RANDOM=5-9,13      seeds 5..9 and 13
//	DIFF_RANDOM_STEPS=60    operations per seed (default 60)
//	DIFF_RANDOM_TIME=300s   stop starting seeds after this (default 5m)
//	DIFF_RANDOM_MIN=1       minimise each seed's first difference (ddmin)
//	DIFF_RANDOM_SKIP=rename,hardlink  operation kinds never drawn ("multi":
//	                        no SETSTAT of several attributes at once;
//	                        copy-data,lsetstat,fsync,searchonly: the
//	                        sequences of the seeds from before those
//	                        were drawn)
//	DIFF_RANDOM_VERBOSE=1   log every operation's answers
//
// The sequence depends on the seed alone, never on an answer, so both
// servers get the same requests. A difference that a written-down reason
// explains (sftpRandTrack.deliberate names its row: a deliberateDiffs
// step, or a limitation the README states) is counted apart; the others
// are logged, grouped by their first operation. They do not fail the test
// unless DIFF_RANDOM_STRICT is set: which ones are deliberate is a
// judgement made by reading the report, and the rows match loosely.
func TestSFTPRandom(t *testing.T) {
	env := randSettings(t)
	seeds, nsteps, skip, verbose, minimise := env.seeds, env.steps, env.skip, env.verbose, env.minimise

	ref, refDial := randOpenSSHSide(t)
	ug, ugDial := randUpgateSide(t)
	r := &randRunner{t: t, ref: ref, ug: ug, dial: [2]func() (*rawSFTP, *ssh.Client){refDial, ugDial}, oneSession: os.Getenv("DIFF_RANDOM_ONE_SESSION") != ""}
	defer func() {
		// A failure inside a run (the agent still holding a file after
		// every handle closed) stops the test: show what that run did.
		if r.current != nil {
			var b strings.Builder
			fmt.Fprintf(&b, "the run %s stopped; its operations:\n", r.currentName)
			for i, o := range r.current {
				fmt.Fprintf(&b, "\t%02d %s\n", i, o)
			}
			t.Log(b.String())
		}
	}()
	k := newRandTally(env, "operations", "%s")
	for _, seed := range seeds {
		if k.spent(t) {
			break
		}
		ops := genRandOps(seed, nsteps, skip)
		res := r.run(fmt.Sprintf("r%d", seed), ops)
		if verbose {
			for i, o := range res.ops {
				t.Logf("seed %d %02d %s\n\topenssh: %s\n\tupgate:  %s", seed, i, ops[i], o.ref, o.ug)
			}
			for _, d := range res.diffs {
				if d.row != "" {
					t.Logf("seed %d: deliberate difference at %02d %s%s (%s)\n\topenssh: %s\n\tupgate:  %s", seed, d.index, d.op, d.path, d.row, d.ref, d.ug)
				}
			}
		}
		real := k.add(seed, len(ops), res.diffs, signatureBy("openssh"))
		if len(real) == 0 {
			continue
		}
		first := real[0]
		t.Log(firstDiffText(fmt.Sprintf("seed %d: %d differences not deliberate; the first:", seed, len(real)), ops, real, "openssh: ", "upgate:  "))
		if minimise {
			m := r.minimise(seed, ops, first)
			t.Log(runText(fmt.Sprintf("seed %d minimised to %d operations", seed, len(m)), m, r.run(fmt.Sprintf("r%dmin", seed), m), "openssh: ", "upgate:  "))
		}
	}
	k.report(t)
}

// randEnv is what the DIFF_RANDOM variables ask of a random
// differential test (TestSFTPRandom, TestFTPRandom).
type randEnv struct {
	seeds    []uint64
	steps    int           // DIFF_RANDOM_STEPS, operations per seed
	budget   time.Duration // DIFF_RANDOM_TIME
	skip     map[string]bool
	verbose  bool // DIFF_RANDOM_VERBOSE
	minimise bool // DIFF_RANDOM_MIN
	strict   bool // DIFF_RANDOM_STRICT
}

// randSettings reads the DIFF_RANDOM variables, and skips the test when
// DIFF_RANDOM names no seeds.
func randSettings(t *testing.T) randEnv {
	t.Helper()
	spec := os.Getenv("DIFF_RANDOM")
	if spec == "" {
		t.Skip("random differential sequences: set DIFF_RANDOM=N (seeds 1..N) or a list of seeds")
	}
	seeds, err := parseSeeds(spec)
	if err != nil {
		t.Fatal(err)
	}
	e := randEnv{seeds: seeds, steps: envInt(t, "DIFF_RANDOM_STEPS", 60), budget: 5 * time.Minute, skip: map[string]bool{}}
	if v := os.Getenv("DIFF_RANDOM_TIME"); v != "" {
		if e.budget, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range strings.Split(os.Getenv("DIFF_RANDOM_SKIP"), ",") {
		if k != "" {
			e.skip[k] = true
		}
	}
	e.verbose = os.Getenv("DIFF_RANDOM_VERBOSE") != ""
	e.minimise = os.Getenv("DIFF_RANDOM_MIN") != ""
	e.strict = os.Getenv("DIFF_RANDOM_STRICT") != ""
	return e
}

// randTally counts a random test's seeds and what their differences
// were, for its report.
type randTally struct {
	env    randEnv
	start  time.Time
	unit   string              // what an operation is called: "operations", "requests"
	row    string              // how a deliberate row is shown, a format of one %s
	groups map[string][]string // signature of a first difference: seeds
	// deliberates counts the differences each row explained.
	deliberates                       map[string]int
	ran, steps, clean, onlyDeliberate int
}

func newRandTally(env randEnv, unit, row string) *randTally {
	return &randTally{env: env, start: time.Now(), unit: unit, row: row, groups: map[string][]string{}, deliberates: map[string]int{}}
}

// spent reports, once the time budget is spent, that no more seeds run.
func (k *randTally) spent(t *testing.T) bool {
	t.Helper()
	if time.Since(k.start) <= k.env.budget {
		return false
	}
	t.Logf("time budget %v spent after %d seeds", k.env.budget, k.ran)
	return true
}

// add counts seed's run of n operations, its differences diffs, and
// returns those that no row explains; the first of them is grouped by
// signature.
func (k *randTally) add(seed uint64, n int, diffs []randDiff, signature func(randDiff) string) []randDiff {
	k.ran++
	k.steps += n
	var real []randDiff
	for _, d := range diffs {
		if d.row == "" {
			real = append(real, d)
			continue
		}
		k.deliberates[d.row]++
	}
	switch {
	case len(diffs) == 0:
		k.clean++
	case len(real) == 0:
		k.onlyDeliberate++
	default:
		sig := signature(real[0])
		k.groups[sig] = append(k.groups[sig], strconv.FormatUint(seed, 10))
	}
	return real
}

// report logs the tally and, with DIFF_RANDOM_STRICT, fails the test for
// seeds with differences no row explains.
func (k *randTally) report(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%d seeds, %d %s, %v; %d seeds without a difference, %d with deliberate ones only; first differences by kind:\n",
		k.ran, k.steps, k.unit, time.Since(k.start).Round(time.Second), k.clean, k.onlyDeliberate)
	b.WriteString(groupsText(k.groups))
	for _, row := range slices.Sorted(maps.Keys(k.deliberates)) {
		fmt.Fprintf(&b, "\tdeliberate ("+k.row+"): %d times\n", row, k.deliberates[row])
	}
	t.Log(b.String())
	if k.env.strict && k.clean+k.onlyDeliberate != k.ran {
		t.Errorf("%d of %d seeds showed differences not deliberate", k.ran-k.clean-k.onlyDeliberate, k.ran)
	}
}

// runText shows a run's operations and both answers to each (labelled
// ref and ug), marking those that differ, and its tree differences.
func runText[T fmt.Stringer](title string, ops []T, res randResult, ref, ug string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", title)
	for i, o := range ops {
		mark := " "
		if i < len(res.ops) && res.ops[i].ref != res.ops[i].ug {
			mark = "*"
		}
		fmt.Fprintf(&b, "%s %02d %s\n", mark, i, o)
		if i < len(res.ops) {
			fmt.Fprintf(&b, "\t\t%s%s\n\t\t%s%s\n", ref, res.ops[i].ref, ug, res.ops[i].ug)
		}
	}
	for _, d := range res.diffs {
		if d.index < 0 {
			fmt.Fprintf(&b, "* tree %s %s\n\t\t%s%s\n\t\t%s%s\n", d.path, d.op, ref, d.ref, ug, d.ug)
		}
	}
	return b.String()
}

// firstDiffText is how a random test logs a seed's differences: head,
// the operations up to the first difference and its two answers (each
// after its server's label), then up to nine more.
func firstDiffText[T fmt.Stringer](head string, ops []T, diffs []randDiff, ref, ug string) string {
	first := diffs[0]
	var b strings.Builder
	b.WriteString(head + "\n")
	for i := max(0, first.index-3); i <= first.index && i < len(ops); i++ {
		fmt.Fprintf(&b, "\t%02d %s\n", i, ops[i])
	}
	fmt.Fprintf(&b, "\t\t%s%s\n\t\t%s%s", ref, first.ref, ug, first.ug)
	for _, d := range diffs[1:min(len(diffs), 10)] {
		if d.index < 0 {
			fmt.Fprintf(&b, "\n\tthen tree %s\n\t\t%s%s\n\t\t%s%s", d.path, ref, d.ref, ug, d.ug)
		} else {
			fmt.Fprintf(&b, "\n\tthen %02d %s\n\t\t%s%s\n\t\t%s%s", d.index, d.op, ref, d.ref, ug, d.ug)
		}
	}
	return b.String()
}

// groupsText lists a random test's first differences by kind (groups:
// signature to seeds), sorted.
func groupsText(groups map[string][]string) string {
	var b strings.Builder
	for _, s := range slices.Sorted(maps.Keys(groups)) {
		fmt.Fprintf(&b, "\t%s\n\t\tseeds %s\n", s, strings.Join(groups[s], " "))
	}
	return b.String()
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// parseSeeds reads "N" (1..N), or a comma-separated list of seeds and
// ranges "a-b".
func parseSeeds(spec string) ([]uint64, error) {
	if n, err := strconv.ParseUint(spec, 10, 64); err == nil && !strings.Contains(spec, ",") {
		var l []uint64
		for i := uint64(1); i <= n && i <= 100000; i++ {
			l = append(l, i)
		}
		return l, nil
	}
	var l []uint64
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("DIFF_RANDOM=%q: %v", spec, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a || b-a > 100000 {
				return nil, fmt.Errorf("DIFF_RANDOM=%q: bad range %q", spec, part)
			}
		}
		for i := a; i <= b; i++ {
			l = append(l, i)
		}
	}
	return l, nil
}

// randOp is one random operation. Paths are relative to the seed's
// directory; slot names a handle ("h0".."h3").
type randOp struct {
	kind        string
	slot        int
	path, path2 string
	flags       uint32
	a           attrs
	off         uint64
	n           uint32
	data        string
	// slot2 and off2: copy-data's destination handle and offset (slot
	// and off its source; n its length, 0 to the source's end).
	slot2 int
	off2  uint64
}

func (o randOp) String() string {
	switch o.kind {
	case "open":
		return fmt.Sprintf("h%d = open %s %s%s", o.slot, o.path, pflagsString(o.flags), attrsString(o.a))
	case "write":
		return fmt.Sprintf("write h%d at %d %q", o.slot, o.off, o.data)
	case "read":
		return fmt.Sprintf("read h%d at %d len %d", o.slot, o.off, o.n)
	case "fstat", "close":
		return fmt.Sprintf("%s h%d", o.kind, o.slot)
	case "fsetstat":
		return fmt.Sprintf("fsetstat h%d%s", o.slot, attrsString(o.a))
	case "fsync":
		return fmt.Sprintf("fsync h%d", o.slot)
	case "copy-data":
		return fmt.Sprintf("copy-data h%d at %d len %d -> h%d at %d", o.slot, o.off, o.n, o.slot2, o.off2)
	case "setstat", "mkdir", "lsetstat":
		return fmt.Sprintf("%s %s%s", o.kind, o.path, attrsString(o.a))
	case "rename", "posix-rename", "hardlink":
		return fmt.Sprintf("%s %s -> %s", o.kind, o.path, o.path2)
	case "symlink":
		return fmt.Sprintf("symlink %s -> target %q", o.path, o.path2)
	}
	return o.kind + " " + o.path
}

func pflagsString(f uint32) string {
	var l []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{pfRead, "READ"}, {pfWrite, "WRITE"}, {pfAppend, "APPEND"}, {pfCreat, "CREAT"}, {pfTrunc, "TRUNC"}, {pfExcl, "EXCL"}} {
		if f&x.bit != 0 {
			l = append(l, x.name)
		}
	}
	if len(l) == 0 {
		return "0"
	}
	return strings.Join(l, "|")
}

func attrsString(a attrs) string {
	var s string
	if a.Flags&attrSize != 0 {
		s += fmt.Sprintf(" size=%d", a.Size)
	}
	if a.Flags&attrPerms != 0 {
		s += fmt.Sprintf(" mode=%04o", a.Perms)
	}
	if a.Flags&attrACModTim != 0 {
		s += fmt.Sprintf(" atime=%d mtime=%d", a.Atime, a.Mtime)
	}
	return s
}

// The namespace the operations draw from.
var (
	randPaths   = []string{"a", "b", "c", "d", "d/e", "d/f", "x"}
	randDirs    = []string{".", "d", "x", "a"}
	randTargets = []string{"a", "b", "d", "e", "../a", "d/e", "nowhere", "."}
	randModes   = []uint32{0o644, 0o600, 0o755, 0o444, 0o700, 0o555, 0o200, 0o640}
	randFlags   = []uint32{
		pfRead, pfWrite, pfRead | pfWrite, pfWrite | pfCreat | pfTrunc, pfWrite | pfCreat,
		pfWrite | pfAppend, pfWrite | pfCreat | pfAppend, pfRead | pfWrite | pfCreat,
		pfWrite | pfCreat | pfExcl, pfWrite | pfTrunc, pfRead | pfWrite | pfCreat | pfTrunc,
	}
	randKinds = []randKind{
		{"open", 12}, {"write", 12}, {"read", 6}, {"fstat", 3}, {"fsetstat", 3}, {"close", 8},
		{"stat", 3}, {"lstat", 3}, {"setstat", 4}, {"mkdir", 3}, {"rmdir", 2}, {"remove", 3},
		{"rename", 2}, {"posix-rename", 3}, {"symlink", 2}, {"hardlink", 2}, {"readlink", 2},
		{"readdir", 3}, {"realpath", 1}, {"content", 4},
		// Drawn last, so that skipping them (DIFF_RANDOM_SKIP=copy-data,
		// lsetstat,fsync) draws the sequences of the seeds from before
		// they were added.
		{"copy-data", 2}, {"lsetstat", 1}, {"fsync", 1},
		// A directory its user may search but not read (or neither),
		// which the agent passes through since root.go's openat2.
		{"searchonly", 1},
	}
	// randSearchModes are searchonly's modes.
	randSearchModes = []uint32{0o311, 0o100, 0o300}
)

// randAttrs draws attributes to set; without multi, one at a time.
func randAttrs(rng *rand.Rand, multi bool) attrs {
	var a attrs
	n := 5
	if !multi {
		n = 4
	}
	switch rng.IntN(n) {
	case 0:
		a = size(uint64([]int{0, 2, 7, 12}[rng.IntN(4)]))
	case 1, 2:
		a = perms(randModes[rng.IntN(len(randModes))])
	case 3:
		a = times(tAtime, tMtime)
	default:
		a = perms(randModes[rng.IntN(len(randModes))])
		a.Flags |= attrSize | attrACModTim
		a.Size = uint64(rng.IntN(6))
		a.Atime, a.Mtime = tAtime, tMtime
	}
	return a
}

// randKind is an operation kind a random test draws, and its weight.
type randKind struct {
	kind   string
	weight int
}

// kindPicker draws kinds by weight, never those in skip; nil when skip
// leaves none.
func kindPicker(rng *rand.Rand, kinds []randKind, skip map[string]bool) func() string {
	total := 0
	for _, k := range kinds {
		if !skip[k.kind] {
			total += k.weight
		}
	}
	if total == 0 {
		return nil
	}
	return func() string {
		x := rng.IntN(total)
		for _, k := range kinds {
			if skip[k.kind] {
				continue
			}
			if x < k.weight {
				return k.kind
			}
			x -= k.weight
		}
		return ""
	}
}

// genRandOps draws n operations from seed. A model of which handle slots
// were opened (not whether the open succeeded) steers the draw towards
// operations on handles that may be open.
func genRandOps(seed uint64, n int, skip map[string]bool) []randOp {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	pick := kindPicker(rng, randKinds, skip)
	if pick == nil {
		return nil
	}
	var open [4]bool
	openSlots := func() []int {
		var l []int
		for i, o := range open {
			if o {
				l = append(l, i)
			}
		}
		return l
	}
	path := func() string { return randPaths[rng.IntN(len(randPaths))] }
	var ops []randOp
	for len(ops) < n {
		kind := pick()
		o := randOp{kind: kind}
		switch kind {
		case "open":
			free := -1
			for i, op := range open {
				if !op {
					free = i
					break
				}
			}
			if free < 0 {
				continue
			}
			o.slot, o.path = free, path()
			if rng.IntN(4) == 0 {
				o.flags = uint32(rng.IntN(64))
			} else {
				o.flags = randFlags[rng.IntN(len(randFlags))]
			}
			if rng.IntN(3) == 0 {
				o.a = perms(randModes[rng.IntN(len(randModes))])
			}
			open[free] = true
		case "copy-data":
			l := openSlots()
			if len(l) == 0 {
				continue
			}
			o.slot, o.slot2 = l[rng.IntN(len(l))], l[rng.IntN(len(l))]
			o.off = uint64([]int{0, 0, 1, 4}[rng.IntN(4)])
			o.n = uint32([]int{0, 0, 2, 100}[rng.IntN(4)])
			o.off2 = uint64([]int{0, 0, 3, 8, 20}[rng.IntN(5)])
		case "write", "read", "fstat", "fsetstat", "close", "fsync":
			l := openSlots()
			if len(l) == 0 {
				continue
			}
			o.slot = l[rng.IntN(len(l))]
			switch kind {
			case "write":
				o.off = uint64([]int{0, 0, 1, 3, 5, 8, 20}[rng.IntN(7)])
				o.data = fmt.Sprintf("%c%02d", 'A'+rune(len(ops)%26), len(ops))[:1+rng.IntN(3)]
			case "read":
				o.off = uint64([]int{0, 0, 1, 4, 20}[rng.IntN(5)])
				o.n = uint32([]int{3, 100}[rng.IntN(2)])
			case "fsetstat":
				o.a = randAttrs(rng, !skip["multi"])
			case "close":
				open[o.slot] = false
			}
		case "setstat", "lsetstat":
			o.path, o.a = path(), randAttrs(rng, !skip["multi"])
		case "searchonly": // a SETSTAT of a directory's mode
			o.kind = "setstat"
			o.path = randDirs[rng.IntN(len(randDirs))]
			o.a = perms(randSearchModes[rng.IntN(len(randSearchModes))])
		case "mkdir":
			o.path = path()
			if rng.IntN(3) == 0 {
				o.a = perms(randModes[rng.IntN(len(randModes))])
			}
		case "rename", "posix-rename", "hardlink":
			o.path, o.path2 = path(), path()
		case "symlink":
			o.path, o.path2 = path(), randTargets[rng.IntN(len(randTargets))]
		case "readdir":
			o.path = randDirs[rng.IntN(len(randDirs))]
		case "realpath":
			o.path = []string{".", "d/..", "d/e", "x/../a", "nowhere/.."}[rng.IntN(5)]
		default: // stat, lstat, rmdir, remove, readlink, content
			o.path = path()
		}
		ops = append(ops, o)
	}
	// Close what is left open, in a random order.
	l := openSlots()
	rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	for _, s := range l {
		ops = append(ops, randOp{kind: "close", slot: s})
	}
	return ops
}

// exec runs one operation on s in the directory root (a logical path).
func (o randOp) exec(s *sftpSide, root string) string {
	p := func(rel string) string {
		if rel == "." {
			return s.p(root)
		}
		return s.p(root + "/" + rel)
	}
	h := fmt.Sprintf("h%d", o.slot)
	c := s.a
	switch o.kind {
	case "open":
		if old, ok := s.handles[h]; ok {
			// A shortened sequence can open a slot twice: the first
			// handle stays open, as in the sequence, and is closed at
			// the end.
			s.handles[fmt.Sprintf("left%d", len(s.handles))] = old
		}
		return s.open(c, h, root+"/"+o.path, o.flags, o.a)
	case "write":
		r, err := c.write(s.h(h), o.off, []byte(o.data))
		return s.res(r, err)
	case "read":
		r, err := c.read(s.h(h), o.off, o.n)
		return s.res(r, err)
	case "fstat":
		r, err := c.request(fxpFstat, str(nil, s.h(h)))
		return s.res(r, err)
	case "fsetstat":
		r, err := c.fsetstat(s.h(h), o.a)
		return s.res(r, err)
	case "close":
		return s.closeH(c, h)
	case "fsync":
		r, err := c.extended("fsync@openssh.com", str(nil, s.h(h)))
		return s.res(r, err)
	case "copy-data":
		pl := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h(h)), o.off), uint64(o.n))
		pl = binary.BigEndian.AppendUint64(str(pl, s.h(fmt.Sprintf("h%d", o.slot2))), o.off2)
		r, err := c.extended("copy-data", pl)
		return s.res(r, err)
	case "lsetstat":
		r, err := c.extended("lsetstat@openssh.com", append(str(nil, p(o.path)), o.a.marshal()...))
		return s.res(r, err)
	case "stat", "lstat", "rmdir", "remove", "readlink", "realpath":
		typ := map[string]byte{"stat": fxpStat, "lstat": fxpLstat, "rmdir": fxpRmdir, "remove": fxpRemove, "readlink": fxpReadlink, "realpath": fxpRealpath}[o.kind]
		r, err := c.pathOp(typ, p(o.path))
		return s.res(r, err)
	case "setstat":
		r, err := c.setstat(p(o.path), o.a)
		return s.res(r, err)
	case "mkdir":
		r, err := c.mkdir(p(o.path), o.a)
		return s.res(r, err)
	case "rename":
		r, err := c.twoPaths(fxpRename, p(o.path), p(o.path2))
		return s.res(r, err)
	case "posix-rename", "hardlink":
		r, err := c.extended(o.kind+"@openssh.com", str(str(nil, p(o.path)), p(o.path2)))
		return s.res(r, err)
	case "symlink":
		r, err := c.symlink(o.path2, p(o.path))
		return s.res(r, err)
	case "readdir":
		if o.path == "." {
			return s.listing(c, root)
		}
		return s.listing(c, root+"/"+o.path)
	case "content":
		return s.readAll(c, root+"/"+o.path)
	}
	return "unknown operation " + o.kind
}

type randRunner struct {
	t       *testing.T
	ref, ug *sftpSide
	// dial opens a fresh session on each side: every run has its own.
	dial [2]func() (*rawSFTP, *ssh.Client)
	// oneSession runs every sequence on the first session of each side.
	oneSession bool
	conns      [2]*ssh.Client
	// leaked is set once the agent stayed busy after a run.
	leaked bool
	runs   int
	// current is the run under way, currentName its directory.
	current     []randOp
	currentName string
}

type randAnswer struct{ ref, ug string }

// randDiff is a difference: at operation index, or (index -1) in the tree
// at path.
type randDiff struct {
	index   int
	op      string
	path    string
	ref, ug string
	// row names what explains the difference: a row of deliberateDiffs
	// (TestFTPRandom) or its reason, or is empty.
	row string
}

// signatureBy groups differences by their first operation's kind (an
// SFTP open's "h0 = open" as "open") and the two answers, the reference
// server named ref.
func signatureBy(ref string) func(randDiff) string {
	return func(d randDiff) string {
		if d.index < 0 {
			return fmt.Sprintf("tree %s: %s %s / upgate %s", d.path, ref, d.ref, d.ug)
		}
		kind, _, _ := strings.Cut(d.op, " ")
		if strings.Contains(d.op, "= open") {
			kind = "open"
		}
		return fmt.Sprintf("%s: %s %s / upgate %s", kind, ref, d.ref, d.ug)
	}
}

type randResult struct {
	ops   []randAnswer
	diffs []randDiff
}

// run sets up a fresh tree under /name on both servers, runs ops on both,
// one operation at a time, closes every handle and compares the trees.
func (r *randRunner) run(name string, ops []randOp) randResult {
	r.runs++
	r.current, r.currentName = ops, name
	// The run works in /NAME/w, so that a link to "../a" made at its top
	// stays in /NAME, whose tree is compared, and out of later runs.
	root := "/" + name + "/w"
	for i, s := range []*sftpSide{r.ref, r.ug} {
		if !r.oneSession {
			s.a, r.conns[i] = r.dial[i]()
		}
		setup := s.with(func() string { return "OK" }, "/"+name+"/", root+"/", root+"/a=alpha", root+"/d/", root+"/d/e=echo data")
		if setup != "OK" {
			r.t.Fatalf("%s: setup of %s: %s", s.name, root, setup)
		}
		s.handles = map[string]string{}
	}
	var res randResult
	k := newSFTPRandTrack(filepath.Join(r.ref.dir, name, "w"), filepath.Join(r.ug.dir, name, "w"))
	for i, o := range ops {
		// Paths in answers name the run's directory as /ROOT: a
		// shortened sequence runs in a directory of its own.
		norm := func(a string) string {
			return strings.ReplaceAll(strings.ReplaceAll(a, `"`+root, `"/ROOT`), `"/`+name, `"/RUN`)
		}
		k.before(o)
		a := randAnswer{ref: norm(o.exec(r.ref, root)), ug: norm(o.exec(r.ug, root))}
		k.after(o, a.ref)
		res.ops = append(res.ops, a)
		if a.ref != a.ug {
			res.diffs = append(res.diffs, randDiff{index: i, op: o.String(), ref: a.ref, ug: a.ug, row: k.deliberate(&o, a.ref, a.ug)})
		}
		if strings.HasPrefix(a.ref, "error: no answer") && r.ref.kill != nil {
			// sftp-server stopped answering (a copy-data into the file
			// itself never ends): end its session, and this run.
			r.ref.kill()
			k.diverge(rowCopyIntoItself)
			break
		}
	}
	trees := [2]map[string]treeEntry{}
	for i, s := range []*sftpSide{r.ref, r.ug} {
		for h := range s.handles {
			s.closeH(s.a, h)
		}
		if s.idle != nil && !r.leaked {
			if msg := softly(s.idle); msg != "" {
				// The agent still holds a file although every handle
				// was closed: a leak, shown as a difference of its own.
				// Later runs cannot tell theirs from it: they no longer
				// wait.
				res.diffs = append(res.diffs, randDiff{index: -1, path: "(agent)", ref: "idle", ug: msg})
				r.leaked = true
				var b strings.Builder
				fmt.Fprintf(&b, "run %s left the agent busy: %s; its operations:\n", name, msg)
				for i, o := range ops {
					fmt.Fprintf(&b, "\t%02d %s\n\t\topenssh: %s\n\t\tupgate:  %s\n", i, o, res.ops[i].ref, res.ops[i].ug)
				}
				r.t.Log(b.String())
			}
		} else if s.idle != nil {
			time.Sleep(100 * time.Millisecond)
		}
		trees[i] = snapshot(r.t, filepath.Join(s.dir, name))
		if !r.oneSession {
			s.a.Close()
			r.conns[i].Close()
		}
	}
	r.current = nil
	for _, d := range compareTrees("sftp", trees[0], trees[1], false) {
		res.diffs = append(res.diffs, randDiff{index: -1, path: strings.TrimPrefix(d.step, "tree "), ref: d.ref, ug: d.upgate,
			row: k.deliberate(nil, d.ref, d.upgate)})
	}
	return res
}

// has reports whether res shows the difference want: the same operation
// (or tree path) with the same two answers.
func (res randResult) has(want randDiff) bool {
	for _, d := range res.diffs {
		if d.index >= 0 == (want.index >= 0) && d.op == want.op && d.path == want.path && d.ref == want.ref && d.ug == want.ug {
			return true
		}
	}
	return false
}

// minimise shrinks ops to a short sequence that still shows want (ddmin,
// at most 300 runs).
func (r *randRunner) minimise(seed uint64, ops []randOp, want randDiff) []randOp {
	// The difference at an operation needs nothing after it, except for
	// the closes that end the sequence (a tree difference may need them).
	if want.index >= 0 {
		ops = append([]randOp(nil), ops[:want.index+1]...)
	}
	return ddmin.Shrink(ops, 300, func(c []randOp) bool {
		return r.run(fmt.Sprintf("r%dm%d", seed, r.runs), c).has(want)
	})
}

// randOpenSSHSide is openSSHSide with a function that opens one more raw
// session, closed when the test ends or by its caller.
func randOpenSSHSide(t *testing.T) (*sftpSide, func() (*rawSFTP, *ssh.Client)) {
	t.Helper()
	srv := refserver.StartOpenSSH(t)
	s := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	s.user = srv.User
	s.prefix, s.dir = srv.Dir, srv.Dir
	s.kill = srv.KillSessions
	return s, randDialer(t, srv.Addr, srv.ClientConfig())
}

// randUpgateSide is upgateSFTPSide with a function that opens one more
// raw session, and an idle check that a test failure of its own cannot
// stop (softly).
func randUpgateSide(t *testing.T) (*sftpSide, func() (*rawSFTP, *ssh.Client)) {
	t.Helper()
	s, u, cfg := startUpgateSFTP(t)
	s.idle = func() { u.AgentIdle(&softTB{TB: t}) }
	return s, randDialer(t, u.Srv.SFTPAddr.String(), cfg)
}

// randDialer returns a function that opens a raw session on a
// connection of its own; closing the session closes the connection.
func randDialer(t *testing.T, addr string, cfg *ssh.ClientConfig) func() (*rawSFTP, *ssh.Client) {
	return func() (*rawSFTP, *ssh.Client) {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("ssh %s: %v", addr, err)
		}
		r, err := newRawSFTP(c)
		if err != nil {
			c.Close()
			t.Fatalf("sftp %s: %v", addr, err)
		}
		return r, c
	}
}

// softTB turns a helper's fatal failure into a panic that softly
// recovers, so that a run can report it and the test go on.
type softTB struct{ testing.TB }

type softFailure struct{ msg string }

func (s *softTB) Fatal(args ...any)                 { panic(softFailure{fmt.Sprint(args...)}) }
func (s *softTB) Fatalf(format string, args ...any) { panic(softFailure{fmt.Sprintf(format, args...)}) }
func (s *softTB) Error(args ...any)                 { panic(softFailure{fmt.Sprint(args...)}) }
func (s *softTB) Errorf(format string, args ...any) { panic(softFailure{fmt.Sprintf(format, args...)}) }
func (s *softTB) FailNow()                          { panic(softFailure{"FailNow"}) }

// softly runs fn and returns the message of a softTB failure in it.
func softly(fn func()) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(softFailure)
			if !ok {
				panic(v)
			}
			msg = f.msg
		}
	}()
	fn()
	return ""
}
