package differential_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSFTPRandomRepro runs the minimised sequences TestSFTPRandom found,
// written out by hand, on both servers and logs every answer. Skipped
// unless DIFF_RANDOM_REPRO is set (to a name, or "all").
func TestSFTPRandomRepro(t *testing.T) {
	which := os.Getenv("DIFF_RANDOM_REPRO")
	if which == "" {
		t.Skip("set DIFF_RANDOM_REPRO=all or a sequence's name")
	}
	rw := uint32(pfRead | pfWrite)
	open := func(slot int, path string, flags uint32, a attrs) randOp {
		return randOp{kind: "open", slot: slot, path: path, flags: flags, a: a}
	}
	write := func(slot int, off uint64, data string) randOp {
		return randOp{kind: "write", slot: slot, off: off, data: data}
	}
	cl := func(slot int) randOp { return randOp{kind: "close", slot: slot} }
	content := func(p string) randOp { return randOp{kind: "content", path: p} }
	stat := func(p string) randOp { return randOp{kind: "stat", path: p} }
	fstat := func(slot int) randOp { return randOp{kind: "fstat", slot: slot} }
	seqs := []struct {
		name string
		ops  []randOp
	}{
		{"append-trunc-upload", []randOp{open(0, "a", rw|pfAppend|pfCreat|pfTrunc, attrs{}), write(0, 0, "NEW"), content("a"), cl(0), content("a")}},
		{"append-trunc-upload-wronly", []randOp{open(0, "a", pfWrite|pfAppend|pfCreat|pfTrunc, attrs{}), write(0, 0, "NEW"), fstat(0), cl(0), content("a")}},
		{"second-upload-append", []randOp{open(1, "a", pfWrite|pfCreat|pfTrunc, attrs{}), open(0, "a", rw|pfAppend|pfCreat|pfTrunc, attrs{}), write(0, 0, "NEW"), content("a"), cl(0), cl(1), content("a")}},
		{"second-upload-noappend", []randOp{open(1, "a", pfWrite|pfCreat|pfTrunc, attrs{}), open(0, "a", rw|pfCreat|pfTrunc, attrs{}), write(0, 0, "NEW"), content("a"), cl(0), cl(1), content("a")}},
		{"trunc-own-new-file", []randOp{open(0, "n", pfWrite|pfCreat, attrs{}), write(0, 0, "abc"), open(1, "n", pfWrite|pfTrunc, attrs{}), write(1, 0, "X"), cl(1), cl(0), content("n")}},
		{"close-trunc-excl", []randOp{open(0, "c", pfAppend|pfCreat|pfTrunc, attrs{}), open(1, "c", pfTrunc|pfExcl, attrs{}), cl(1), cl(0), content("c")}},
		{"times-then-write", []randOp{open(0, "a", rw, attrs{}), {kind: "fsetstat", slot: 0, a: times(tAtime, tMtime)}, write(0, 5, "W"), cl(0), stat("a")}},
		{"setstat-times-then-write-new", []randOp{open(0, "n", pfWrite|pfCreat, attrs{}), {kind: "setstat", path: "n", a: times(tAtime, tMtime)}, write(0, 0, "W"), cl(0), stat("n")}},
		{"ftruncate-readonly", []randOp{open(0, "a", pfRead, attrs{}), {kind: "fsetstat", slot: 0, a: size(2)}, cl(0), content("a")}},
		{"fsetstat-partial", []randOp{open(0, "a", pfRead, attrs{}), {kind: "fsetstat", slot: 0, a: attrs{Flags: attrSize | attrPerms | attrACModTim, Size: 1, Perms: 0o600, Atime: tAtime, Mtime: tMtime}}, fstat(0), cl(0)}},
		{"setstat-partial-dir", []randOp{{kind: "setstat", path: "d", a: attrs{Flags: attrSize | attrPerms, Size: 0, Perms: 0o700}}, stat("d")}},
		{"symlink-alias-upload", []randOp{{kind: "symlink", path: "c", path2: "a"}, open(0, "a", pfWrite|pfTrunc, attrs{}), write(0, 0, "NEW"), content("c"), open(1, "c", pfWrite, attrs{}), write(1, 0, "X"), cl(1), cl(0), content("a")}},
		{"follower-after-commit-0555", []randOp{open(1, "d/e", rw|pfCreat|pfTrunc, attrs{}), {kind: "setstat", path: "d", a: perms(0o555)}, open(2, "d/e", pfWrite, perms(0o600)), cl(1), {kind: "remove", path: "d/e"}, write(2, 3, "V"), {kind: "readdir", path: "d"}, cl(2), {kind: "readdir", path: "d"}}},
		{"follower-after-commit", []randOp{open(1, "d/e", rw|pfCreat|pfTrunc, attrs{}), open(2, "d/e", pfWrite, perms(0o600)), cl(1), write(2, 3, "V"), {kind: "readdir", path: "d"}, cl(2), {kind: "readdir", path: "d"}}},
		{"lsetstat-kinds", []randOp{
			{kind: "lsetstat", path: "a", a: size(2)},
			{kind: "lsetstat", path: "a", a: perms(0o600)},
			{kind: "lsetstat", path: "a", a: times(tAtime, tMtime)},
			{kind: "lsetstat", path: "a", a: attrs{Flags: attrSize | attrPerms, Size: 1, Perms: 0o640}},
			{kind: "lsetstat", path: "nowhere", a: perms(0o600)},
			{kind: "symlink", path: "l", path2: "a"},
			{kind: "lsetstat", path: "l", a: perms(0o600)},
			{kind: "lsetstat", path: "l", a: times(tAtime, tMtime)},
			{kind: "lsetstat", path: "d", a: perms(0o700)},
			open(0, "n", pfWrite|pfCreat|pfTrunc, attrs{}),
			{kind: "lsetstat", path: "n", a: perms(0o600)},
			{kind: "lsetstat", path: "n", a: times(tAtime, tMtime)},
			cl(0), stat("a"), {kind: "lstat", path: "l"}, stat("n"), stat("d"),
		}},
		{"copy-data-kinds", []randOp{
			open(0, "a", rw, attrs{}), open(1, "b", pfWrite|pfCreat|pfTrunc, attrs{}),
			{kind: "copy-data", slot: 0, n: 0, slot2: 1},
			{kind: "copy-data", slot: 0, off: 100, n: 0, slot2: 1},
			{kind: "copy-data", slot: 0, off: 1, n: 2, slot2: 1, off2: 8},
			{kind: "copy-data", slot: 1, n: 0, slot2: 0},
			{kind: "copy-data", slot: 0, n: 0, slot2: 0, off2: 3},
			{kind: "copy-data", slot: 0, off: 4, n: 100, slot2: 0, off2: 0},
			open(2, "c", pfRead, attrs{}),
			{kind: "copy-data", slot: 0, n: 0, slot2: 2},
			cl(0), cl(1), cl(2), content("a"), content("b"),
		}},
		{"symlink-to-loop", []randOp{{kind: "symlink", path: "l", path2: "l"}, {kind: "symlink", path: "m", path2: "l"}, {kind: "readlink", path: "m"}}},
		{"fsetstat-dir-handle-mode", []randOp{open(0, "d", pfRead, attrs{}), {kind: "fsetstat", slot: 0, a: perms(0o700)}, cl(0), stat("d")}},
		{"open-dir-append", []randOp{open(0, "d", pfAppend, attrs{}), cl(0)}},
		{"realpath-missing-dotdot", []randOp{{kind: "realpath", path: "nowhere/.."}, {kind: "realpath", path: "a/.."}}},
		{"rmdir-file-in-0555", []randOp{{kind: "setstat", path: "d", a: perms(0o555)}, {kind: "rmdir", path: "d/e"}, {kind: "setstat", path: "d", a: perms(0o755)}}},
		{"hardlink-dir-over-existing", []randOp{{kind: "hardlink", path: "d", path2: "a"}}},
		{"append-reopen-order", []randOp{open(1, "a", pfWrite|pfCreat|pfTrunc, attrs{}), open(3, "a", pfWrite|pfAppend, perms(0o700)), write(1, 3, "A52"), write(3, 1, "E56"), stat("b"), cl(1), cl(3), content("a")}},
		{"append-reopen-order-b", []randOp{open(1, "a", pfWrite|pfCreat|pfTrunc, attrs{}), open(3, "a", pfWrite|pfAppend, perms(0o700)), write(1, 3, "A52"), write(3, 1, "E56"), stat("b"), cl(3), cl(1), content("a")}},
		{"append-reopen-order-c", []randOp{open(1, "a", pfWrite|pfCreat|pfTrunc, attrs{}), open(3, "a", pfWrite|pfAppend, attrs{}), write(1, 3, "A52"), write(3, 1, "E56"), cl(3), cl(1), content("a")}},
		{"hardlink-of-upload", []randOp{open(0, "a", pfWrite|pfCreat|pfTrunc, attrs{}), {kind: "hardlink", path: "a", path2: "d/f"}}},
		{"removed-join-fstat", []randOp{open(0, "n", pfWrite|pfCreat|pfExcl, attrs{}), open(1, "n", pfWrite|pfCreat, perms(0o600)), {kind: "remove", path: "n"}, write(1, 3, "V"), fstat(0), fstat(1), cl(0), cl(1)}},
		{"upload-renamed-over-link-reopened", []randOp{{kind: "symlink", path: "l", path2: "a"}, open(1, "a", rw|pfTrunc, attrs{}), {kind: "posix-rename", path: "a", path2: "l"}, open(2, "l", pfWrite|pfTrunc, attrs{}), write(2, 0, "NEW"), write(1, 5, "old"), cl(2), cl(1), content("l"), {kind: "lstat", path: "a"}, {kind: "lstat", path: "l"}}},
		{"upload-renamed-over-file-reopened", []randOp{open(3, "b", pfWrite|pfCreat|pfTrunc, perms(0o600)), write(3, 0, "b was here"), cl(3), {kind: "setstat", path: "b", a: perms(0o600)}, open(1, "a", rw|pfTrunc, attrs{}), {kind: "posix-rename", path: "a", path2: "b"}, open(2, "b", pfWrite|pfTrunc, attrs{}), write(2, 0, "NEW"), cl(2), cl(1), content("b"), {kind: "lstat", path: "b"}}},
		{"removed-append-join-fstat", []randOp{open(1, "n", pfWrite|pfCreat|pfTrunc, attrs{}), open(3, "n", pfWrite|pfAppend, attrs{}), write(1, 8, "N3"), write(3, 20, "W"), {kind: "remove", path: "n"}, fstat(1), cl(1), cl(3)}},
		{"upload-times-then-read", []randOp{open(0, "a", rw|pfCreat|pfTrunc, attrs{}), write(0, 0, "P1"), {kind: "fsetstat", slot: 0, a: times(tAtime, tMtime)}, {kind: "read", slot: 0, off: 0, n: 100}, fstat(0), cl(0), stat("a")}},
		{"upload-times-then-read-b", []randOp{open(0, "a", rw|pfCreat|pfTrunc, attrs{}), write(0, 0, "P1"), {kind: "read", slot: 0, off: 20, n: 3}, {kind: "fsetstat", slot: 0, a: times(tAtime, tMtime)}, {kind: "read", slot: 0, off: 0, n: 100}, fstat(0), cl(0), stat("a")}},
		{"read-atime", []randOp{open(0, "n", pfRead|pfCreat, attrs{}), {kind: "setstat", path: "n", a: times(tAtime, tMtime)}, {kind: "read", slot: 0, off: 0, n: 3}, fstat(0), cl(0)}},
	}
	ref, refDial := randOpenSSHSide(t)
	ug, ugDial := randUpgateSide(t)
	r := &randRunner{t: t, ref: ref, ug: ug, dial: [2]func() (*rawSFTP, *ssh.Client){refDial, ugDial}}
	for _, sq := range seqs {
		if which != "all" && !strings.Contains(","+which+",", ","+sq.name+",") {
			continue
		}
		for rep := 0; rep < 2; rep++ {
			res := r.run(fmt.Sprintf("%s-%d", sq.name, rep), sq.ops)
			var b strings.Builder
			fmt.Fprintf(&b, "%s (run %d): %d differences\n", sq.name, rep+1, len(res.diffs))
			for i, o := range sq.ops {
				mark := " "
				if res.ops[i].ref != res.ops[i].ug {
					mark = "*"
				}
				fmt.Fprintf(&b, "%s %02d %s\n\t\topenssh: %s\n\t\tupgate:  %s\n", mark, i, o, res.ops[i].ref, res.ops[i].ug)
			}
			for _, d := range res.diffs {
				if d.index < 0 {
					fmt.Fprintf(&b, "* tree %s\n\t\topenssh: %s\n\t\tupgate:  %s\n", d.path, d.ref, d.ug)
				}
			}
			t.Log(b.String())
		}
	}
}
