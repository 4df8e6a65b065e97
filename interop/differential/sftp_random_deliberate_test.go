package differential_test

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Rows TestSFTPRandom names for the differences its sequences meet all the
// time: the step of a deliberateDiffs row whose reason covers the answer
// here, or "README: " and the limitation the README writes down.
const (
	rowCopyDataOK     = "copy-data from a handle open only for writing, 2 bytes (its read fails)"
	rowUnreadableDir  = "perm: readdir /perm/closed (0600)"
	rowDirTimeSave    = "README: a directory's mtime moves at an atomic save's open and close (Atomic for others, POSIX for oneself)"
	rowAliasUpload    = "README: the session's upload reached by another name is the committed file there (The session knows its uploads by path)"
	rowMoveUpUnread   = "README: a directory its user may not read is not moved up: the links in it cannot be checked (A directory moved up)"
	rowCopyIntoItself = "README: copy-data to the source's end stops at the end the source had when it began (sftp-server's, into the file itself, never ends)"
	rowRenameOver     = "rename over existing file"
	rowHardLinkSave   = "write through one hard link, read the other"
	rowLinkUpload     = "hardlink /hu -> /hu2 during its upload"
)

// sftpRandTrack follows what a run's session holds, as the reference
// server's disk shows it, so that sftpRandDeliberate can tell a
// difference's cause: the saves in progress (handles that truncated or
// created their file), and the handles opened through another name of
// one of them.
type sftpRandTrack struct {
	root string // the run's directory on the reference server's disk
	// saves maps a slot whose open began a save to the path it named
	// (cleaned, relative to root) and where that led on disk.
	saves map[int][2]string
	// aliasSlots are the slots opened through another name of a save in
	// progress.
	aliasSlots map[int]bool
	// diverged names the deliberate difference after which the two
	// trees, or the session's views of them, differ (another name of a
	// save in progress used, a directory not moved): every later
	// difference is its consequence.
	diverged string
	// mirror is the run's directory on upgate's disk, or "".
	mirror string
}

// newSFTPRandTrack tracks a run whose directory on the reference's disk is
// root; mirror, if not "", is the same directory on upgate's disk, whose
// links real reads too (see there).
func newSFTPRandTrack(root, mirror string) *sftpRandTrack {
	return &sftpRandTrack{root: root, mirror: mirror, saves: map[int][2]string{}, aliasSlots: map[int]bool{}}
}

// real is where rel leads on disk, relative to root: its links followed,
// the last name kept as it is where it names nothing yet. Reading a link
// moves its atime (relatime, while the atime is not after the mtime), so
// the links on the way are read on both servers' disks alike: reading
// only the reference's once showed as a link's atime moved by
// sftp-server alone (TestSFTPRandom seed 11514).
func (k *sftpRandTrack) real(rel string) string {
	if k.mirror != "" {
		m := filepath.Join(k.mirror, rel)
		if _, err := filepath.EvalSymlinks(m); err != nil {
			_, _ = filepath.EvalSymlinks(filepath.Dir(m))
		}
	}
	p := filepath.Join(k.root, rel)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	} else if d, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		p = filepath.Join(d, filepath.Base(p))
	}
	if r, err := filepath.Rel(k.root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

// alias reports whether rel is another name of a save in progress, or of
// a directory above one: it leads where one leads (or above it), by
// another way than the name that save was opened by.
func (k *sftpRandTrack) alias(rel string) bool {
	named, real := path.Clean(rel), k.real(rel)
	below := func(p, dir string) bool { return dir == "." || strings.HasPrefix(p, dir+"/") }
	for _, s := range k.saves {
		if s[1] == real && s[0] != named || below(s[1], real) && !below(s[0], named) {
			return true
		}
	}
	return false
}

// existsNotDir reports whether rel names something on disk that is no
// directory (a link counts as itself).
func (k *sftpRandTrack) existsNotDir(rel string) bool {
	fi, err := os.Lstat(filepath.Join(k.root, rel))
	return err == nil && !fi.IsDir()
}

// saving reports whether rel is the name a save in progress was opened
// by.
func (k *sftpRandTrack) saving(rel string) bool {
	for _, s := range k.saves {
		if s[0] == path.Clean(rel) {
			return true
		}
	}
	return false
}

// unreadableInside reports whether the directory at rel, or one inside
// it, refuses its owner a read.
func (k *sftpRandTrack) unreadableInside(rel string) bool {
	return unreadableDirIn(filepath.Join(k.root, rel))
}

// unreadableDirIn reports whether the directory at disk, or one below it,
// lacks its owner's read bit, or lacks the search bit and holds a
// directory or a link (the agent does not move it up: it cannot look
// at the links inside).
func unreadableDirIn(disk string) bool {
	found := false
	_ = filepath.WalkDir(disk, func(p string, d os.DirEntry, err error) error {
		if fi, serr := os.Lstat(p); serr == nil && fi.IsDir() && fi.Mode().Perm()&0o400 == 0 {
			found = true
		} else if serr == nil && fi.IsDir() && fi.Mode().Perm()&0o100 == 0 {
			ents, _ := os.ReadDir(p)
			found = found || slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.IsDir() || e.Type()&fs.ModeSymlink != 0 })
		}
		if err != nil && d != nil && d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// before notes what o touches before it runs on the reference server.
func (k *sftpRandTrack) before(o randOp) {
	switch o.kind {
	case "open", "stat", "lstat", "setstat", "lsetstat", "remove", "rmdir", "mkdir",
		"rename", "posix-rename", "hardlink", "readdir", "readlink", "realpath", "content", "symlink":
		if o.path != "" && k.alias(o.path) {
			k.diverge(rowAliasUpload)
			if o.kind == "open" {
				k.aliasSlots[o.slot] = true
			}
		}
		if o.path2 != "" && o.kind != "symlink" && k.alias(o.path2) {
			k.diverge(rowAliasUpload)
		}
	}
}

// diverge notes the first deliberate difference the run's later ones
// follow from.
func (k *sftpRandTrack) diverge(row string) {
	if k.diverged == "" {
		k.diverged = row
	}
}

// after notes what o did, from the reference server's answer.
func (k *sftpRandTrack) after(o randOp, ref string) {
	switch o.kind {
	case "open":
		delete(k.saves, o.slot)
		if ref == "HANDLE" && o.flags&pfWrite != 0 && o.flags&(pfTrunc|pfCreat) != 0 && !k.aliasSlots[o.slot] {
			k.saves[o.slot] = [2]string{path.Clean(o.path), k.real(o.path)}
			var st syscall.Stat_t
			if o.flags&pfTrunc != 0 && syscall.Stat(filepath.Join(k.root, o.path), &st) == nil && st.Nlink > 1 {
				// A save of a file with other hard links replaces it
				// by a rename: they keep the old content.
				k.diverge(rowHardLinkSave)
			}
		}
	case "close":
		delete(k.saves, o.slot)
		delete(k.aliasSlots, o.slot)
	case "rename", "posix-rename":
		// A save renamed (or one below a renamed directory) goes on
		// under its new name.
		from, to := path.Clean(o.path), path.Clean(o.path2)
		for slot, sv := range k.saves {
			if ref == "OK" && (sv[0] == from || strings.HasPrefix(sv[0], from+"/")) {
				named := to + strings.TrimPrefix(sv[0], from)
				k.saves[slot] = [2]string{named, k.real(named)}
			}
		}
	}
}

// dirTimes matches a directory's mtime in an answer: an ATTRS or a
// listing entry of mode 004xxxx with its long line's date, or a tree
// entry "dir NNNN mtime=...".
var (
	dirAttrsTime = regexp.MustCompile(`(mode=004[0-7]{4} atime=[^ ]+ mtime=)[^ }]+`)
	dirLongDate  = regexp.MustCompile(`(long=d[^ ]* )"[^"]*"`)
	dirTreeTime  = regexp.MustCompile(`^(dir [0-7]{4} mtime=).*$`)
)

// withoutDirTimes is an answer with its directories' mtimes taken out.
func withoutSFTPDirTimes(a string) string {
	a = dirAttrsTime.ReplaceAllString(a, "${1}T")
	a = dirLongDate.ReplaceAllString(a, `${1}"T"`)
	return dirTreeTime.ReplaceAllString(a, "${1}T")
}

// sftpRandDeliberate names the row that explains a difference of
// TestSFTPRandom's (o's answers ref and ug, or the tree's at path when o
// is nil), or "".
func (k *sftpRandTrack) deliberate(o *randOp, ref, ug string) string {
	if k.diverged != "" {
		return k.diverged
	}
	if o != nil {
		switch {
		case o.kind == "copy-data" && ref == "OK" && (ug == "FAILURE" || ug == "NO_SUCH_FILE" || ug == "PERMISSION_DENIED"):
			return rowCopyDataOK
		case o.kind == "copy-data" && o.n == 0 && strings.HasPrefix(ref, "error: no answer"):
			return rowCopyIntoItself
		case o.kind == "rename" && ref == "FAILURE" && k.existsNotDir(o.path) && k.existsNotDir(o.path2):
			// sftp-server's RENAME refuses an existing new name (its
			// link(2) fails, or its stat(2) finds one); upgate's
			// replaces it, or answers why not.
			if ug == "OK" {
				k.diverge(rowRenameOver)
			}
			return rowRenameOver
		case o.kind == "hardlink" && ref == "OK" && ug == "FAILURE" && k.saving(o.path):
			k.diverge(rowLinkUpload)
			return rowLinkUpload
		case (o.kind == "rename" || o.kind == "posix-rename") && ref == "OK" && ug == "PERMISSION_DENIED" &&
			strings.Count(k.real(o.path2), "/") < strings.Count(path.Clean(o.path), "/") && k.unreadableInside(o.path2):
			// Moved on the reference server: its new place is shallower.
			k.diverge(rowMoveUpUnread)
			return rowMoveUpUnread
		case o.kind == "readdir" && ug == "PERMISSION_DENIED" && strings.HasPrefix(ref, "ENTRIES"):
			if fi, err := os.Stat(filepath.Join(k.root, o.path)); err == nil && fi.IsDir() && fi.Mode().Perm()&0o500 != 0o500 {
				return rowUnreadableDir
			}
		}
	}
	if ug != ref && withoutSFTPDirTimes(ug) == withoutSFTPDirTimes(ref) {
		return rowDirTimeSave
	}
	return ""
}

// TestSFTPRandomRows checks what TestSFTPRandom's classification rests
// on: its table rows are sftp steps of deliberateDiffs, its README rows
// name what the README says, directories' times and nothing else are
// taken out, and a name of a save in progress is told from the save's
// own.
func TestSFTPRandomRows(t *testing.T) {
	for _, row := range []string{rowCopyDataOK, rowUnreadableDir, rowRenameOver, rowHardLinkSave, rowLinkUpload} {
		if !slices.ContainsFunc(deliberateDiffs, func(d deliberate) bool { return d.proto == "sftp" && d.step == row }) {
			t.Errorf("row %q is no sftp step of deliberateDiffs", row)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Atomic for others, POSIX for oneself.", "The session knows its uploads by path", "A directory moved up"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md no longer says %q, which a row of TestSFTPRandom cites", want)
		}
	}

	for _, c := range []struct {
		ref, ug string
		same    bool
	}{
		{"ATTRS mode=0040755 atime=now mtime=2004-11-09T11:33:20Z", "ATTRS mode=0040755 atime=now mtime=now", true},
		{"ATTRS size=3 mode=0100644 atime=now mtime=2004-11-09T11:33:20Z", "ATTRS size=3 mode=0100644 atime=now mtime=now", false},
		{"ATTRS mode=0040755 atime=now mtime=now", "ATTRS mode=0040700 atime=now mtime=now", false},
		{`ENTRIES "d"{mode=0040755 atime=now mtime=2004-11-09T11:33:20Z long=drwxr-xr-x "Nov  9  2004"}`,
			`ENTRIES "d"{mode=0040755 atime=now mtime=now long=drwxr-xr-x "Dec  n now"}`, true},
		{`ENTRIES "e"{size=0 mode=0100644 atime=now mtime=2004-11-09T11:33:20Z long=-rw-r--r-- 1 0 "Nov  9  2004"}`,
			`ENTRIES "e"{size=0 mode=0100644 atime=now mtime=now long=-rw-r--r-- 1 0 "Dec  n now"}`, false},
		{"dir 0755 mtime=2004-11-09T11:33:20Z", "dir 0755 mtime=now", true},
		{"file 0644 size=2 mtime=2004-11-09T11:33:20Z sha256=x", "file 0644 size=2 mtime=now sha256=x", false},
	} {
		if got := withoutSFTPDirTimes(c.ref) == withoutSFTPDirTimes(c.ug); got != c.same {
			t.Errorf("%q against %q: the same without directories' times: %v, want %v", c.ref, c.ug, got, c.same)
		}
	}

	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The reference server's disk: its opens made the files.
	for _, f := range []string{"a", "d/f", "d/e"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"x": "a", "dl": "d"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	k := newSFTPRandTrack(root, "")
	k.after(randOp{kind: "open", slot: 1, path: "a", flags: pfWrite | pfCreat | pfTrunc}, "HANDLE")
	k.after(randOp{kind: "open", slot: 2, path: "d/f", flags: pfWrite | pfCreat}, "HANDLE")
	k.after(randOp{kind: "open", slot: 3, path: "d/e", flags: pfRead}, "HANDLE")
	for p, want := range map[string]bool{"a": false, "./a": false, "x": true, "d/f": false, "dl/f": true, "dl/e": false, "d/e": false,
		"d": false, "dl": true, ".": false} {
		if got := k.alias(p); got != want {
			t.Errorf("alias(%q) = %v, want %v", p, got, want)
		}
	}
	k.after(randOp{kind: "close", slot: 1}, "OK")
	if k.alias("x") {
		t.Error("alias(x) after the save of a closed: true")
	}
}
