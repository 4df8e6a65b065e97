package differential_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestFTPRandomRepro runs the minimised sequences TestFTPRandom found,
// written out by hand, on vsftpd and upgate and logs every answer,
// marking the differences. Skipped unless DIFF_RANDOM_REPRO is set (to a
// name, or "all").
func TestFTPRandomRepro(t *testing.T) {
	which := os.Getenv("DIFF_RANDOM_REPRO")
	if which == "" {
		t.Skip("set DIFF_RANDOM_REPRO=all or a sequence's name")
	}
	op := func(kind, p string) ftpRandOp { return ftpRandOp{kind: kind, path: p, abs: true} }
	rename := func(from, to string) ftpRandOp {
		return ftpRandOp{kind: "rename", path: from, abs: true, path2: to, abs2: true}
	}
	rnto := func(to string) ftpRandOp { return ftpRandOp{kind: "rnto", path2: to, abs2: true} }
	stor := func(p, data string) ftpRandOp { return ftpRandOp{kind: "stor", path: p, abs: true, data: data} }
	chmod := func(mode, p string) ftpRandOp { return ftpRandOp{kind: "chmod", path: p, abs: true, mode: mode} }
	typ := func(t string) ftpRandOp { return ftpRandOp{kind: "type", mode: t} }
	rest := func(n int64) ftpRandOp { return ftpRandOp{kind: "rest", n: n} }
	list := func(p string) ftpRandOp { return ftpRandOp{kind: "list", path: p, abs: true} }
	seqs := []struct {
		name string
		ops  []ftpRandOp
	}{
		// A failed RNTO leaves the RNFR armed: a later RNTO renames the
		// old source (over an existing file).
		{"rnto-after-failed-rnto", []ftpRandOp{rename("ld", "x/y"), rnto("l"), op("retr", "l")}},
		{"rnto-after-failed-rnto-file", []ftpRandOp{rename("a", "x/y"), rnto("d/e"), op("retr", "d/e")}},
		{"rnto-after-failed-rnto-and-rnfr", []ftpRandOp{rename("a", "x/y"), op("rnfr", "nothing"), rnto("d/e"), op("retr", "d/e")}},
		// LIST and NLST of a link whose target is missing.
		{"list-dangling-link", []ftpRandOp{list("dang"), op("nlst", "dang"), op("dele", "dang")}},
		{"nlst-link-after-its-target-moved", []ftpRandOp{rename("a", "d/f"), op("nlst", "l"), list("l")}},
		// REST in ASCII mode (no conversion on either side).
		{"rest-ascii", []ftpRandOp{stor("b", "X2"), typ("A"), rest(1), op("retr", "b"), {kind: "reststor", path: "b", abs: true, n: 1, data: "Y"}, typ("I"), op("retr", "b")}},
		// MDTM with a time and MFMT of a directory.
		{"mdtm-set-dir", []ftpRandOp{op("mdtmset", "d"), op("mfmt", "ld"), op("mfmt", "d/e"), list(".")}},
		// ".." after a name that is no directory, resolved by name.
		{"dotdot-after-non-directory", []ftpRandOp{op("nlst", "a/.."), op("mlsd", "nowhere/.."), op("cwd", "a/.."), op("pwd", "")}},
		// CDUP from a directory one may no longer search.
		{"cdup-unsearchable", []ftpRandOp{op("cwd", "d"), chmod("444", "d"), {kind: "cdup"}, {kind: "pwd"}, chmod("755", "d")}},
		// An upload over a file changes its directory's time on upgate
		// (the atomic upload's rename), not on vsftpd.
		// vsftpd lists dir/name as empty where the working directory
		// holds a link named name whose target is there under another
		// name: it looks the name up there (TestFTPRandom seed 1907).
		{"rest-stor-after-cdup", []ftpRandOp{{kind: "cdup"}, op("rnfr", "l"), {kind: "rnto", path2: "dang"}, {kind: "stor", path: "dang", data: "N39"}, op("dele", "dang"), {kind: "reststor", path: "dang", abs: true, n: 1, data: "S4"}, list("dang"), op("size", "dang"), op("retr", "dang")}},
		{"list-cwd-link", []ftpRandOp{{kind: "cdup"}, op("rnfr", "l"), {kind: "rnto", path2: "dang"}, {kind: "stor", path: "dang", data: "N39"}, op("dele", "dang"), stor("dang", "S4"), list("dang"), list("d/../dang"), {kind: "list", path: "dang"}, op("nlst", "dang"), op("stat", "dang")}},
		{"dir-mtime-upload", []ftpRandOp{op("age", "d"), list("."), stor("d/e", "NEW"), list(".")}},
	}
	r := newFTPRandRunner(t)
	for _, sq := range seqs {
		if which != "all" && !strings.Contains(","+which+",", ","+sq.name+",") {
			continue
		}
		for rep := 0; rep < 2; rep++ {
			res := r.run(fmt.Sprintf("%s-%d", sq.name, rep), sq.ops)
			t.Log(r.describe(fmt.Sprintf("%s (run %d): %d differences", sq.name, rep+1, len(res.diffs)), sq.ops, res))
		}
	}
}
