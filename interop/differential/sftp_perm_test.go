package differential_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
)

// sftpPermSteps are the steps where the kernel's permission checks
// decide: a file mode 0444 or 0000, a directory mode 0555 or 0000, as
// the file's owner who is not root (the reference login, upgate's agent
// process). Each ends with the modes put back, so that the final
// listings and the trees compare as everything else does.
func sftpPermSteps() []sftpStep {
	chmod := func(path string, mode uint32) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.setstat(s.p(path), perms(mode)); return s.res(r, err) }
	}
	stat := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.pathOp(fxpStat, s.p(path)); return s.res(r, err) }
	}
	content := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string { return s.readAll(s.a, path) }
	}
	// upload opens path with pflags, writes data (when open for
	// writing) and closes; it shows each answer up to the first that
	// fails.
	upload := func(path string, pflags uint32, data string) func(s *sftpSide) string {
		return func(s *sftpSide) string {
			if r := s.open(s.a, "perm", path, pflags, attrs{}); r != "HANDLE" {
				return "open: " + r
			}
			if pflags&pfWrite == 0 {
				return "HANDLE " + s.closeH(s.a, "perm")
			}
			r, err := s.a.write(s.h("perm"), 0, []byte(data))
			if w := s.res(r, err); w != "OK" {
				s.closeH(s.a, "perm")
				return "write: " + w
			}
			return "HANDLE OK " + s.closeH(s.a, "perm")
		}
	}
	return append([]sftpStep{
		{"perm: fixtures", func(s *sftpSide) string {
			return s.with(func() string { return "OK" },
				"/perm/", "/perm/ro=READ ONLY", "/perm/rw=RW", "/perm/secret=SECRET", "/perm/rodir/", "/perm/rodir/in=IN",
				"/perm/rodir/ro=RO IN RODIR", "/perm/rodir/sd/", "/perm/closed/", "/perm/closed/f=F")
		}},

		// A file mode 0444: its owner may not write it, in place or by
		// replacing it, but may change its times and mode and, in a
		// writable directory, rename or remove it.
		{"perm: chmod /perm/ro 0444", chmod("/perm/ro", 0o444)},
		{"perm: upload over /perm/ro (CREAT|TRUNC|WRITE)", upload("/perm/ro", pfWrite|pfCreat|pfTrunc, "REPLACED")},
		{"perm: upload over /perm/ro (WRITE|TRUNC)", upload("/perm/ro", pfWrite|pfTrunc, "REPLACED")},
		{"perm: write into /perm/ro (WRITE)", upload("/perm/ro", pfWrite, "XX")},
		{"perm: append to /perm/ro", upload("/perm/ro", pfWrite|pfAppend, "MORE")},
		{"perm: open /perm/ro READ", upload("/perm/ro", pfRead, "")},
		{"perm: setstat /perm/ro size 0", func(s *sftpSide) string { r, err := s.a.setstat(s.p("/perm/ro"), size(0)); return s.res(r, err) }},
		{"perm: setstat /perm/ro mtime", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/perm/ro"), attrs{Flags: attrACModTim, Atime: tMtime, Mtime: tMtime})
			return s.res(r, err)
		}},
		{"perm: content /perm/ro", content("/perm/ro")},
		{"perm: stat /perm/ro", stat("/perm/ro")},
		{"perm: posix-rename /perm/rw over /perm/ro", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rw")), s.p("/perm/ro")))
			return s.res(r, err)
		}},
		{"perm: content /perm/ro after the rename", content("/perm/ro")},

		// A file mode 0000 (its owner may still stat it, chmod it, and
		// remove it) and 0200 (write only).
		{"perm: chmod /perm/secret 0000", chmod("/perm/secret", 0o000)},
		{"perm: open /perm/secret READ", upload("/perm/secret", pfRead, "")},
		{"perm: stat /perm/secret", stat("/perm/secret")},
		{"perm: chmod /perm/secret 0200", chmod("/perm/secret", 0o200)},
		{"perm: open /perm/secret READ (0200)", upload("/perm/secret", pfRead, "")},
		{"perm: upload over /perm/secret (0200)", upload("/perm/secret", pfWrite|pfCreat|pfTrunc, "NEW SECRET")},
		{"perm: stat /perm/secret after its upload", stat("/perm/secret")},
		{"perm: readdir /perm/secret (a file, 0200)", func(s *sftpSide) string { return s.listing(s.a, "/perm/secret") }},
		{"perm: chmod /perm/secret 0000 again", chmod("/perm/secret", 0o000)},
		{"perm: readdir /perm/secret (a file, 0000)", func(s *sftpSide) string { return s.listing(s.a, "/perm/secret") }},
		{"perm: chmod /perm/secret 0600", chmod("/perm/secret", 0o600)},
		{"perm: content /perm/secret", content("/perm/secret")},

		// A directory that holds the session's upload loses its search
		// bit and is renamed: the rename is made, and answered OK; the
		// open handle writes on and commits where the directory went.
		{"perm: mkdir /perm/mvd", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/perm/mvd"), attrs{}); return s.res(r, err) }},
		{"perm: open /perm/mvd/f WRITE|CREAT|TRUNC, write", func(s *sftpSide) string {
			if r := s.open(s.a, "mvd", "/perm/mvd/f", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return r
			}
			r, err := s.a.write(s.h("mvd"), 0, []byte("moved"))
			return "HANDLE " + s.res(r, err)
		}},
		{"perm: chmod /perm/mvd 0600", chmod("/perm/mvd", 0o600)},
		{"perm: posix-rename /perm/mvd /perm/mvd2 (0600, holding the upload)", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/mvd")), s.p("/perm/mvd2")))
			return s.res(r, err)
		}},
		{"perm: write /perm/mvd2/f through the handle, close", func(s *sftpSide) string {
			r, err := s.a.write(s.h("mvd"), 5, []byte("!"))
			return s.res(r, err) + " " + s.closeH(s.a, "mvd")
		}},
		{"perm: chmod /perm/mvd2 0755", chmod("/perm/mvd2", 0o755)},
		{"perm: content /perm/mvd2/f", content("/perm/mvd2/f")},

		// SETSTAT of times on a file the session writes in place, in a
		// directory that lost its search bit: refused at the lookup,
		// and nothing set (the open handle needs no lookup).
		{"perm: mkdir /perm/ipd", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/perm/ipd"), attrs{}); return s.res(r, err) }},
		{"perm: upload /perm/ipd/f", upload("/perm/ipd/f", pfWrite|pfCreat|pfTrunc, "in place")},
		{"perm: open /perm/ipd/f READ|WRITE (in place)", func(s *sftpSide) string { return s.open(s.a, "ipd", "/perm/ipd/f", pfRead|pfWrite, attrs{}) }},
		{"perm: chmod /perm/ipd 0640", chmod("/perm/ipd", 0o640)},
		{"perm: setstat /perm/ipd/f times (0640 above it, open in place)", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/perm/ipd/f"), times(tAtime, tMtime))
			return s.res(r, err)
		}},
		{"perm: close /perm/ipd/f", func(s *sftpSide) string { return s.closeH(s.a, "ipd") }},
		{"perm: chmod /perm/ipd 0755", chmod("/perm/ipd", 0o755)},
		{"perm: stat /perm/ipd/f", stat("/perm/ipd/f")},

		// A directory mode 0555: nothing in it may be created, removed or
		// renamed, but a writable file in it may be written.
		{"perm: chmod /perm/rodir 0555", chmod("/perm/rodir", 0o555)},
		{"perm: create /perm/rodir/new", upload("/perm/rodir/new", pfWrite|pfCreat|pfTrunc, "NEW")},
		{"perm: create /perm/rodir/excl (EXCL)", upload("/perm/rodir/excl", pfWrite|pfCreat|pfExcl, "NEW")},
		{"perm: mkdir /perm/rodir/sub", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/perm/rodir/sub"), attrs{}); return s.res(r, err) }},
		{"perm: symlink /perm/rodir/ln", func(s *sftpSide) string { r, err := s.a.symlink("in", s.p("/perm/rodir/ln")); return s.res(r, err) }},
		{"perm: remove /perm/rodir/in", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/perm/rodir/in")); return s.res(r, err) }},
		// unlink(2) and rmdir(2) check the directory's permission before
		// the entry's kind: EACCES, not EISDIR or ENOTDIR (upgate looked
		// the kind up first: TestSFTPRandom, seed 1631).
		{"perm: remove /perm/rodir/sd (a directory)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/perm/rodir/sd")); return s.res(r, err) }},
		{"perm: rmdir /perm/rodir/in (a file)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/perm/rodir/in")); return s.res(r, err) }},
		{"perm: rmdir /perm/rodir/sd", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/perm/rodir/sd")); return s.res(r, err) }},
		// The same for the session's upload in progress in a directory
		// made 0444 (no search): EACCES before ENOTDIR (seed 1606).
		{"perm: /perm/rmu/f opened for a new file, /perm/rmu made 0444, rmdir /perm/rmu/f, put back", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/rmu"), attrs{})
			out := s.res(r, err) + " " + s.open(s.a, "rmu", "/perm/rmu/f", pfWrite|pfCreat|pfTrunc, attrs{})
			out += " " + chmod("/perm/rmu", 0o444)(s)
			r, err = s.a.pathOp(fxpRmdir, s.p("/perm/rmu/f"))
			out += " " + s.res(r, err)
			out += " " + chmod("/perm/rmu", 0o755)(s)
			r, err = s.a.pathOp(fxpRmdir, s.p("/perm/rmu/f"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rmu")
			r, err = s.a.pathOp(fxpRemove, s.p("/perm/rmu/f"))
			out += " " + s.res(r, err)
			r, err = s.a.pathOp(fxpRmdir, s.p("/perm/rmu"))
			return out + " " + s.res(r, err)
		}},
		{"perm: rename /perm/rodir/in out", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/perm/rodir/in"), s.p("/perm/out"))
			return s.res(r, err)
		}},
		{"perm: rename /perm/secret into /perm/rodir", func(s *sftpSide) string {
			r, err := s.a.twoPaths(fxpRename, s.p("/perm/secret"), s.p("/perm/rodir/secret"))
			return s.res(r, err)
		}},
		{"perm: hardlink /perm/secret into /perm/rodir", func(s *sftpSide) string {
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/perm/secret")), s.p("/perm/rodir/hl")))
			return s.res(r, err)
		}},
		{"perm: upload over /perm/rodir/in (a writable file)", upload("/perm/rodir/in", pfWrite|pfCreat|pfTrunc, "IN, SAVED")},
		{"perm: content /perm/rodir/in", content("/perm/rodir/in")},
		{"perm: append to /perm/rodir/in", upload("/perm/rodir/in", pfWrite|pfAppend, "+")},
		{"perm: upload over /perm/rodir/ro (0444 in 0555)", func(s *sftpSide) string {
			if r := chmod("/perm/rodir/ro", 0o444)(s); r != "OK" {
				return "chmod: " + r
			}
			return upload("/perm/rodir/ro", pfWrite|pfCreat|pfTrunc, "X")(s)
		}},
		{"perm: content /perm/rodir/in at the end", content("/perm/rodir/in")},
		{"perm: readdir /perm/rodir", func(s *sftpSide) string { return s.listing(s.a, "/perm/rodir") }},

		// Another user's file (root's, mode 0666) that the login may
		// write, and one in a sticky directory (root's 1777, as /tmp):
		// saved over, it stays root's.
		{"perm: upload over root's 0666 file", func(s *sftpSide) string {
			if err := theirs(s.dir, "/perm/theirs", false); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm/theirs", pfWrite|pfCreat|pfTrunc, "SAVED OVER")(s) + " " + content("/perm/theirs")(s) +
				" " + owner(s.dir, "/perm/theirs")
		}},
		{"perm: upload over root's 0666 file in a 1777 directory", func(s *sftpSide) string {
			if err := theirs(s.dir, "/perm/tmp/theirs", true); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm/tmp/theirs", pfWrite|pfCreat|pfTrunc, "SAVED IN TMP")(s) + " " + content("/perm/tmp/theirs")(s) +
				" " + owner(s.dir, "/perm/tmp/theirs")
		}},
		{"perm: upload over a file with an ACL and a user attribute", func(s *sftpSide) string {
			if err := setXattrs(s.dir, "/perm/secret"); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm/secret", pfWrite|pfCreat|pfTrunc, "SAVED")(s) + " " + xattrs(s.dir, "/perm/secret")
		}},
		{"perm: setstat mode of root's file", chmod("/perm/theirs", 0o600)},
		{"perm: setstat mtime of root's file", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/perm/theirs"), attrs{Flags: attrACModTim, Atime: tMtime, Mtime: tMtime})
			return s.res(r, err)
		}},
		{"perm: setstat size of root's file (0666)", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/perm/theirs"), size(4))
			return s.res(r, err) + " " + content("/perm/theirs")(s)
		}},
		{"perm: upload through a link to a 0444 file", func(s *sftpSide) string {
			if r := s.with(func() string { return chmod("/perm/ro2", 0o444)(s) }, "/perm/ro2=LINKED"); r != "OK" {
				return "fixture: " + r
			}
			if r, err := s.a.symlink("ro2", s.p("/perm/ro2link")); err != nil || !r.ok() {
				return "symlink: " + s.res(r, err)
			}
			return upload("/perm/ro2link", pfWrite|pfCreat|pfTrunc, "THROUGH")(s) + " " + content("/perm/ro2")(s)
		}},
		{"perm: remove root's file in a 1777 directory", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpRemove, s.p("/perm/tmp/theirs"))
			return s.res(r, err)
		}},

		// A directory mode 0000, then 0300 (no listing) and 0600 (no
		// search): what is in it cannot be reached or listed.
		{"perm: chmod /perm/closed 0000", chmod("/perm/closed", 0o000)},
		{"perm: readdir /perm/closed (0000)", func(s *sftpSide) string { return s.listing(s.a, "/perm/closed") }},
		{"perm: stat /perm/closed/f (0000)", stat("/perm/closed/f")},
		{"perm: open /perm/closed/f READ (0000)", upload("/perm/closed/f", pfRead, "")},
		{"perm: create /perm/closed/g (0000)", upload("/perm/closed/g", pfWrite|pfCreat|pfTrunc, "G")},
		{"perm: realpath /perm/closed/f (0000)", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpRealpath, s.p("/perm/closed/f"))
			return s.res(r, err)
		}},
		{"perm: chmod /perm/closed 0300", chmod("/perm/closed", 0o300)},
		{"perm: readdir /perm/closed (0300)", func(s *sftpSide) string { return s.listing(s.a, "/perm/closed") }},
		{"perm: content /perm/closed/f (0300)", content("/perm/closed/f")},
		{"perm: chmod /perm/closed 0600", chmod("/perm/closed", 0o600)},
		{"perm: readdir /perm/closed (0600)", func(s *sftpSide) string { return s.listing(s.a, "/perm/closed") }},
		{"perm: stat /perm/closed/f (0600)", stat("/perm/closed/f")},
		{"perm: remove /perm/closed (not empty, 0600)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p("/perm/closed")); return s.res(r, err) }},

		// Modes back, and what is left.
		{"perm: chmod /perm/closed 0755", chmod("/perm/closed", 0o755)},
		{"perm: chmod /perm/rodir 0755", chmod("/perm/rodir", 0o755)},

		// Saves into a directory that its owner makes 0555 while they
		// are open: the files exist since their opens on sftp-server,
		// and they close. upgate's commits were refused then, and the
		// temp files stayed (TestSFTPRandom seed 860).
		{"perm: /perm/rodir/late, /perm/rodir/in and /perm/rodir/lx (EXCL) opened, the directory made 0555, closed", func(s *sftpSide) string {
			out := s.open(s.a, "late", "/perm/rodir/late", pfWrite|pfCreat|pfTrunc, attrs{})
			out += " " + s.open(s.a, "in", "/perm/rodir/in", pfWrite|pfTrunc, attrs{})
			out += " " + s.open(s.a, "lx", "/perm/rodir/lx", pfWrite|pfCreat|pfExcl, attrs{})
			for _, h := range []string{"late", "in", "lx"} {
				r, err := s.a.write(s.h(h), 0, []byte("LATE "+h))
				out += " " + s.res(r, err)
			}
			out += " " + chmod("/perm/rodir", 0o555)(s)
			for _, h := range []string{"late", "in", "lx"} {
				out += " " + s.closeH(s.a, h)
			}
			out += " " + stat("/perm/rodir")(s) + " " + s.listing(s.a, "/perm/rodir")
			return out + " " + chmod("/perm/rodir", 0o755)(s)
		}},
		// The same with the directory left without its read bit too
		// (0000, 0311): the agent could not open it for the commit.
		{"perm: /perm/rodir/z0 and /perm/rodir/z3 opened, the directory made 0000 and 0311, closed", func(s *sftpSide) string {
			out := ""
			for _, c := range []struct {
				name string
				mode uint32
			}{{"z0", 0o000}, {"z3", 0o311}} {
				out += s.open(s.a, c.name, "/perm/rodir/"+c.name, pfWrite|pfCreat|pfTrunc, attrs{})
				r, err := s.a.write(s.h(c.name), 0, []byte("LATE "+c.name))
				out += " " + s.res(r, err) + " " + chmod("/perm/rodir", c.mode)(s) + " " + s.closeH(s.a, c.name)
				out += " " + chmod("/perm/rodir", 0o755)(s) + " " + content("/perm/rodir/"+c.name)(s) + " " + stat("/perm/rodir")(s) + "; "
			}
			return out
		}},
		// A REMOVE of the session's upload that the directory refuses
		// leaves it the session's: it used to forget it (a stat answered
		// NO_SUCH_FILE), and the CLOSE then committed it anyway (a review).
		{"perm: remove of an open upload in a 0555 directory, stat, close", func(s *sftpSide) string {
			out := s.open(s.a, "rm", "/perm/rodir/rm", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("rm"), 0, []byte("RM DATA"))
			out += " " + s.res(r, err)
			out += " " + chmod("/perm/rodir", 0o555)(s)
			r, err = s.a.pathOp(fxpRemove, s.p("/perm/rodir/rm"))
			out += " " + s.res(r, err)
			out += " " + stat("/perm/rodir/rm")(s) + " " + s.listing(s.a, "/perm/rodir")
			out += " " + s.closeH(s.a, "rm")
			out += " " + stat("/perm/rodir/rm")(s) + " " + content("/perm/rodir/rm")(s)
			return out + " " + chmod("/perm/rodir", 0o755)(s)
		}},
		// A truncating open of the session's upload after its directory
		// went 0555: open(2) truncates the file sftp-server's first open
		// made, which needs no write on the directory, and both handles
		// write it (TestSSHFSRandom seed 1923). A second upload could not
		// make its temp file there.
		{"perm: upload /perm/rodir/rs open, the directory made 0555, /perm/rodir/rs opened WRITE|TRUNC and written, both closed", func(s *sftpSide) string {
			out := s.open(s.a, "rs1", "/perm/rodir/rs", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.write(s.h("rs1"), 0, []byte("first save"))
			out += " " + s.res(r, err) + " " + chmod("/perm/rodir", 0o555)(s)
			out += " " + s.open(s.a, "rs2", "/perm/rodir/rs", pfWrite|pfTrunc, attrs{})
			r, err = s.a.write(s.h("rs2"), 0, []byte("NEW"))
			out += " " + s.res(r, err)
			r, err = s.a.request(fxpFstat, str(nil, s.h("rs1")))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("rs1"), 5, []byte("+"))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "rs2") + " " + s.closeH(s.a, "rs1")
			out += " " + stat("/perm/rodir/rs")(s) + " " + content("/perm/rodir/rs")(s)
			return out + " " + chmod("/perm/rodir", 0o755)(s)
		}},
		// The session's upload in a directory that then lost its search
		// bit (made 0644 by its path): the kernel's lookup of the file is
		// refused, though it is there (TestSFTPRandom seeds 2324, 2541).
		// The upload answers again once the bit is back, and commits.
		{"perm: upload /perm/sc/f open, /perm/sc made 0644, stat, lstat, symlink, open, remove, setstat of the file, the bit back, close", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/sc"), attrs{})
			out := s.res(r, err) + " " + s.open(s.a, "scf", "/perm/sc/f", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("scf"), 0, []byte("kept"))
			out += " " + s.res(r, err)
			out += " " + chmod("/perm/sc", 0o644)(s) + " " + stat("/perm/sc/f")(s)
			r, err = s.a.pathOp(fxpLstat, s.p("/perm/sc/f"))
			out += " " + s.res(r, err)
			r, err = s.a.symlink("x", s.p("/perm/sc/f"))
			out += " " + s.res(r, err) + " " + s.open(s.a, "scr", "/perm/sc/f", pfRead, attrs{})
			r, err = s.a.pathOp(fxpRemove, s.p("/perm/sc/f"))
			out += " " + s.res(r, err)
			r, err = s.a.setstat(s.p("/perm/sc/f"), perms(0o600))
			out += " " + s.res(r, err) + " " + chmod("/perm/sc", 0o755)(s) + " " + stat("/perm/sc/f")(s)
			return out + " " + s.closeH(s.a, "scf") + " " + content("/perm/sc/f")(s)
		}},
		// The same with the directory made 0644 through a symbolic link to
		// it, and given its bit back through another (TestSFTPRandom seeds
		// 3431, 4265): the View, which knows the upload by its path, cannot
		// tell from the link's name that the directory is above it.
		{"perm: upload /perm/scl/f open, /perm/scl made 0644 through the link /perm/scl-l, stat, open, setstat of the file, the bit back through /perm/scl-m/.., 0600 through /perm/scl/self (-> .) and back, close", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/scl"), attrs{})
			out := s.res(r, err)
			r, err = s.a.symlink("scl", s.p("/perm/scl-l"))
			out += " " + s.res(r, err)
			r, err = s.a.mkdir(s.p("/perm/scl-m"), attrs{})
			out += " " + s.res(r, err)
			r, err = s.a.symlink("../scl", s.p("/perm/scl-m/up"))
			out += " " + s.res(r, err) + " " + s.open(s.a, "sclf", "/perm/scl/f", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("sclf"), 0, []byte("kept"))
			out += " " + s.res(r, err)
			out += " " + chmod("/perm/scl-l", 0o644)(s) + " " + stat("/perm/scl/f")(s)
			out += " " + s.open(s.a, "sclr", "/perm/scl/f", pfRead, attrs{})
			r, err = s.a.setstat(s.p("/perm/scl/f"), perms(0o600))
			out += " " + s.res(r, err) + " " + chmod("/perm/scl-m/up", 0o755)(s) + " " + stat("/perm/scl/f")(s)
			// Through a link to "." in the directory itself, whose Stat
			// the chmod then refuses (seed 4265).
			r, err = s.a.symlink(".", s.p("/perm/scl/self"))
			out += " " + s.res(r, err) + " " + chmod("/perm/scl/self", 0o600)(s) + " " + stat("/perm/scl/f")(s)
			out += " " + chmod("/perm/scl-l", 0o755)(s) + " " + stat("/perm/scl/f")(s)
			return out + " " + s.closeH(s.a, "sclf") + " " + content("/perm/scl/f")(s)
		}},
		// The same with the directory made 0644 through a handle the
		// session opened on it (FSETSTAT of an OPEN of the directory).
		{"perm: upload /perm/sch/f open, /perm/sch made 0644 by FSETSTAT of its handle, stat, open of the file, the bit back, close", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/sch"), attrs{})
			out := s.res(r, err) + " " + s.open(s.a, "sch", "/perm/sch", pfRead, attrs{})
			out += " " + s.open(s.a, "schf", "/perm/sch/f", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err = s.a.write(s.h("schf"), 0, []byte("kept"))
			out += " " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("sch"), perms(0o644))
			out += " " + s.res(r, err) + " " + stat("/perm/sch/f")(s)
			out += " " + s.open(s.a, "schr", "/perm/sch/f", pfRead, attrs{})
			r, err = s.a.fsetstat(s.h("sch"), perms(0o755))
			out += " " + s.res(r, err) + " " + stat("/perm/sch/f")(s) + " " + s.closeH(s.a, "sch")
			return out + " " + s.closeH(s.a, "schf") + " " + content("/perm/sch/f")(s)
		}},
		// A REMOVE refused (a 0555 directory) leaves the path's writers
		// the View's: a write held back on a handle that followed the
		// committed upload is pushed before the listing (TestSFTPRandom
		// seed 4372; the View forgot them at the REMOVE, refused or not).
		{"perm: upload /perm/rmr/e open, a second handle into it, the upload closed, /perm/rmr made 0555, REMOVE refused, write through the second, readdir, close", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/rmr"), attrs{})
			out := s.res(r, err) + " " + s.open(s.a, "rmr1", "/perm/rmr/e", pfRead|pfWrite|pfCreat|pfTrunc, attrs{})
			out += " " + s.open(s.a, "rmr2", "/perm/rmr/e", pfWrite, attrs{}) + " " + s.closeH(s.a, "rmr1")
			out += " " + chmod("/perm/rmr", 0o555)(s)
			r, err = s.a.pathOp(fxpRemove, s.p("/perm/rmr/e"))
			out += " " + s.res(r, err)
			r, err = s.a.write(s.h("rmr2"), 3, []byte("V"))
			out += " " + s.res(r, err) + " " + s.listing(s.a, "/perm/rmr") + " " + s.closeH(s.a, "rmr2")
			return out + " " + content("/perm/rmr/e")(s) + " " + chmod("/perm/rmr", 0o755)(s)
		}},
		// A directory its user may not read (0200) moved up onto a file:
		// rename(2)'s ENOTDIR (NO_SUCH_FILE), not the agent's refusal to
		// move up what it cannot look into (TestSFTPRandom seed 5508).
		{"perm: posix-rename /perm/rks/rk (0200, a directory) up onto the file /perm/rkf", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/perm/rks/", "/perm/rks/rk/", "/perm/rkf=file")
			out += " " + chmod("/perm/rks/rk", 0o200)(s)
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rks/rk")), s.p("/perm/rkf")))
			return out + " " + s.res(r, err) + " " + chmod("/perm/rks/rk", 0o755)(s)
		}},
		// The same out of a 0555 directory: rename(2) checks the parents'
		// write bits before the kinds, PERMISSION_DENIED (a review).
		{"perm: posix-rename /perm/rkp/rk (0200, a directory, in a 0555 directory) up onto the file /perm/rkf2", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/perm/rkp/", "/perm/rkp/rk/", "/perm/rkf2=file")
			out += " " + chmod("/perm/rkp/rk", 0o200)(s) + " " + chmod("/perm/rkp", 0o555)(s)
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rkp/rk")), s.p("/perm/rkf2")))
			return out + " " + s.res(r, err) + " " + chmod("/perm/rkp", 0o755)(s) + " " + chmod("/perm/rkp/rk", 0o755)(s)
		}},
		// A directory its user may read but not search (0600) moved up:
		// rename(2) moves it without looking inside. The agent reads its
		// entries' kinds from the directory (getdents, which needs only
		// the read bit) and moves it up when it holds only files; one
		// holding a link it cannot read the target of (a search) is
		// refused, whyMoveUpUnread (TestFTPRandom seed 5050: os.File's
		// ReadDir in an os.Root stats every entry, so even files refused).
		{"perm: posix-rename /perm/rsx/sx (0600, holding a file) up to /perm/rsxu, then /perm/rsl/sl (0600, holding a link) up to /perm/rslu", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/perm/rsx/", "/perm/rsx/sx/", "/perm/rsx/sx/f=F", "/perm/rsl/", "/perm/rsl/sl/", "/perm/rsl/sl/f=F")
			r, err := s.a.symlink("f", s.p("/perm/rsl/sl/l"))
			out += " " + s.res(r, err) + " " + chmod("/perm/rsx/sx", 0o600)(s) + " " + chmod("/perm/rsl/sl", 0o600)(s)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rsx/sx")), s.p("/perm/rsxu")))
			out += " " + s.res(r, err)
			r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rsl/sl")), s.p("/perm/rslu")))
			out += " " + s.res(r, err) + " " + chmod("/perm/rsxu", 0o755)(s)
			if out += " " + chmod("/perm/rslu", 0o755)(s); strings.HasSuffix(out, "NO_SUCH_FILE") {
				// Refused: moved once it may be searched, so that the
				// trees compare.
				out += " " + chmod("/perm/rsl/sl", 0o755)(s)
				r, err = s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/rsl/sl")), s.p("/perm/rslu")))
				out += " " + s.res(r, err)
			}
			return out + " " + content("/perm/rsxu/f")(s)
		}},
		// RMDIR of the session's new file in progress: rmdir(2) of a file
		// checks the directory's write bit before the kind (EACCES in a
		// 0555 directory, ENOTDIR in a writable one), where the disk has
		// nothing there yet (TestSFTPRandom seed 2449).
		{"perm: upload /perm/rodir/rd open, rmdir it in the directory made 0555 and again made 0755, close", func(s *sftpSide) string {
			out := s.open(s.a, "rd", "/perm/rodir/rd", pfWrite|pfCreat|pfTrunc, attrs{})
			for _, mode := range []uint32{0o555, 0o755} {
				out += " " + chmod("/perm/rodir", mode)(s)
				r, err := s.a.pathOp(fxpRmdir, s.p("/perm/rodir/rd"))
				out += " " + s.res(r, err)
			}
			return out + " " + s.closeH(s.a, "rd") + " " + stat("/perm/rodir/rd")(s)
		}},
		// A directory renamed onto the session's new file in progress:
		// rename(2) checks both directories' write and search bits before
		// the kinds (EACCES where either refuses it, ENOTDIR once both
		// allow it), where the disk has nothing at the new name yet
		// (TestSFTPRandom seeds 9869, 12415, 13156: upgate answered the
		// upload's ENOTDIR first).
		{"perm: upload /perm/rdu/u open, posix-rename the directories /perm/rdu/d and /perm/rdo onto it with /perm/rdu made 0555, 0100 and again 0755, close", func(s *sftpSide) string {
			out := s.with(func() string { return "OK" }, "/perm/rdu/", "/perm/rdu/d/", "/perm/rdo/")
			out += " " + s.open(s.a, "rdu", "/perm/rdu/u", pfWrite|pfCreat|pfTrunc, attrs{})
			for _, mode := range []uint32{0o555, 0o100, 0o755} {
				out += " " + chmod("/perm/rdu", mode)(s)
				for _, from := range []string{"/perm/rdu/d", "/perm/rdo"} {
					r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p(from)), s.p("/perm/rdu/u")))
					out += " " + s.res(r, err)
				}
			}
			r, err := s.a.write(s.h("rdu"), 0, []byte("kept"))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "rdu") + " " + content("/perm/rdu/u")(s) + " " + stat("/perm/rdu/d")(s) + " " + stat("/perm/rdo")(s)
		}},
		// The same in a sticky directory (root's 1777, as /tmp): a
		// directory of root's there may not be moved by another user
		// (EPERM, PERMISSION_DENIED) before the kinds are compared
		// (a review; the kernel's check_sticky).
		{"perm: upload /perm/stk/u open in root's 1777 /perm/stk, posix-rename root's directory /perm/stk/rootd onto it, close", func(s *sftpSide) string {
			d := filepath.Join(s.dir, "perm", "stk")
			for _, dir := range []string{d, filepath.Join(d, "rootd")} {
				if err := os.Mkdir(dir, 0o755); err != nil {
					return "fixture: " + err.Error()
				}
			}
			if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
				return "fixture: " + err.Error()
			}
			out := s.open(s.a, "stk", "/perm/stk/u", pfWrite|pfCreat|pfTrunc, attrs{})
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm/stk/rootd")), s.p("/perm/stk/u")))
			return out + " " + s.res(r, err) + " " + s.closeH(s.a, "stk") + " " + stat("/perm/stk/rootd")(s) + " " + stat("/perm/stk/u")(s)
		}},
		// A hard link of the session's upload in progress into a directory
		// its user may not write: link(2)'s EACCES, before upgate's own
		// refusal of the upload (EBUSY, deliberate: a row of
		// deliberateDiffs), which is only the answer where link(2) would
		// succeed.
		{"perm: upload /perm/hlu open, hardlink it into /perm/rodir (0555), close", func(s *sftpSide) string {
			out := s.open(s.a, "hlu", "/perm/hlu", pfWrite|pfCreat|pfTrunc, attrs{}) + " " + chmod("/perm/rodir", 0o555)(s)
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/perm/hlu")), s.p("/perm/rodir/hlu")))
			out += " " + s.res(r, err) + " " + s.closeH(s.a, "hlu") + " " + chmod("/perm/rodir", 0o755)(s)
			return out + " " + stat("/perm/rodir/hlu")(s)
		}},
		{"perm: content /perm/rodir/late, /perm/rodir/in, /perm/rodir/lx", func(s *sftpSide) string {
			return content("/perm/rodir/late")(s) + " " + content("/perm/rodir/in")(s) + " " + content("/perm/rodir/lx")(s)
		}},
		{"perm: remove /perm/ro (0444)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/perm/ro")); return s.res(r, err) }},
		{"perm: readdir and stat of setuid and setgid files and a setgid directory", func(s *sftpSide) string {
			if err := specialModes(s.dir, "/perm/special"); err != nil {
				return "fixture: " + err.Error()
			}
			return s.listing(s.a, "/perm/special") + " " + stat("/perm/special/suid")(s) + " " + stat("/perm/special/sgiddir")(s)
		}},
		{"perm: mkdir in a setgid directory", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/special/sgiddir/sub"), attrs{})
			return s.res(r, err) + " " + stat("/perm/special/sgiddir/sub")(s)
		}},
		{"perm: mkdir mode 0700 in a setgid directory", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/special/sgiddir/sub700"), perms(0o700))
			return s.res(r, err) + " " + stat("/perm/special/sgiddir/sub700")(s)
		}},
		{"perm: mkdir mode 01777 in a setgid directory", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/perm/special/sgiddir/subt"), perms(0o1777))
			return s.res(r, err) + " " + stat("/perm/special/sgiddir/subt")(s)
		}},
		{"perm: upload into a setgid directory, then setstat its mode", func(s *sftpSide) string {
			return upload("/perm/special/sgiddir/f", pfWrite|pfCreat|pfTrunc, "F")(s) + " " + stat("/perm/special/sgiddir/f")(s) +
				" " + chmod("/perm/special/sgiddir/sub", 0o750)(s) + " " + stat("/perm/special/sgiddir/sub")(s)
		}},
		{"perm: mkdir / mode 01777 (the user's root, which exists)", func(s *sftpSide) string {
			r, err := s.a.mkdir(s.p("/"), perms(0o1777))
			return s.res(r, err) + " " + stat("/")(s)
		}},
		{"perm: readdir /perm", func(s *sftpSide) string { return s.listing(s.a, "/perm") }},
	}, sftpPerm2Steps(chmod, stat, content, upload)...)
}

// sftpPerm2Steps are more steps of the same kind, under /perm2, each
// leaving the modes as it found them.
func sftpPerm2Steps(chmod func(string, uint32) func(*sftpSide) string, stat, content func(string) func(*sftpSide) string,
	upload func(string, uint32, string) func(*sftpSide) string) []sftpStep {
	lstat := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.pathOp(fxpLstat, s.p(path)); return s.res(r, err) }
	}
	mkdir := func(path string, a attrs) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.mkdir(s.p(path), a); return s.res(r, err) }
	}
	rmdir := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.pathOp(fxpRmdir, s.p(path)); return s.res(r, err) }
	}
	remove := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p(path)); return s.res(r, err) }
	}
	rename := func(from, to string) func(s *sftpSide) string {
		return func(s *sftpSide) string { r, err := s.a.twoPaths(fxpRename, s.p(from), s.p(to)); return s.res(r, err) }
	}
	statvfs := func(path string) func(s *sftpSide) string {
		return func(s *sftpSide) string {
			r, err := s.a.extended("statvfs@openssh.com", str(nil, s.p(path)))
			return s.statvfs(r, err)
		}
	}
	// rw opens path with pflags, writes data at offset 0 and reads it
	// back through the same handle, then closes.
	rw := func(path string, pflags uint32, a attrs, data string) func(s *sftpSide) string {
		return func(s *sftpSide) string {
			if r := s.open(s.a, "rw", path, pflags, a); r != "HANDLE" {
				return "open: " + r
			}
			w, err := s.a.write(s.h("rw"), 0, []byte(data))
			rd, err2 := s.a.read(s.h("rw"), 0, 100)
			return "HANDLE write " + s.res(w, err) + " read " + s.res(rd, err2) + " close " + s.closeH(s.a, "rw")
		}
	}
	// copyData copies all of src into dst at offset 0 (handles named
	// "cs" and "cd", open).
	copyData := func(s *sftpSide) string {
		p := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(str(nil, s.h("cs")), 0), 0)
		p = binary.BigEndian.AppendUint64(str(p, s.h("cd")), 0)
		r, err := s.a.extended("copy-data", p)
		return s.res(r, err)
	}
	return []sftpStep{
		{"perm2: fixtures", func(s *sftpSide) string {
			return s.with(func() string { return "OK" },
				"/perm2/", "/perm2/ro=RO", "/perm2/wo=WO", "/perm2/fs=FS", "/perm2/src=SOURCE", "/perm2/dst=DST",
				"/perm2/hl=HARD", "/perm2/rod/", "/perm2/rod/empty/", "/perm2/mvd/", "/perm2/mvd/x=X", "/perm2/other/",
				"/perm2/closed/", "/perm2/closed/f=F")
		}},

		// A file mode 0444: read and write, or created exclusively.
		{"perm2: chmod /perm2/ro 0444", chmod("/perm2/ro", 0o444)},
		{"perm2: open /perm2/ro READ|WRITE", upload("/perm2/ro", pfRead|pfWrite, "XX")},
		{"perm2: open /perm2/ro READ|WRITE|CREAT|TRUNC", upload("/perm2/ro", pfRead|pfWrite|pfCreat|pfTrunc, "XX")},
		{"perm2: open /perm2/ro CREAT|EXCL|WRITE (exists, 0444)", upload("/perm2/ro", pfWrite|pfCreat|pfExcl, "XX")},
		{"perm2: open /perm2/ro CREAT|EXCL|READ (exists, 0444)", upload("/perm2/ro", pfRead|pfCreat|pfExcl, "")},
		{"perm2: content /perm2/ro", content("/perm2/ro")},

		// A file mode 0200 (write only): appended, written at an offset,
		// opened for reading and writing.
		{"perm2: chmod /perm2/wo 0200", chmod("/perm2/wo", 0o200)},
		{"perm2: append to /perm2/wo (0200)", upload("/perm2/wo", pfWrite|pfAppend, "+A")},
		{"perm2: write at 2 into /perm2/wo (0200)", func(s *sftpSide) string {
			if r := s.open(s.a, "wo", "/perm2/wo", pfWrite, attrs{}); r != "HANDLE" {
				return "open: " + r
			}
			r, err := s.a.write(s.h("wo"), 2, []byte("xy"))
			return s.res(r, err) + " " + s.closeH(s.a, "wo")
		}},
		{"perm2: open /perm2/wo READ|WRITE (0200)", rw("/perm2/wo", pfRead|pfWrite, attrs{}, "RW")},
		{"perm2: open /perm2/wo READ|WRITE|CREAT|TRUNC (0200)", rw("/perm2/wo", pfRead|pfWrite|pfCreat|pfTrunc, attrs{}, "RW")},
		{"perm2: open /perm2/wo READ|APPEND (0200)", upload("/perm2/wo", pfRead|pfAppend, "")},
		{"perm2: chmod /perm2/wo 0600", chmod("/perm2/wo", 0o600)},
		{"perm2: content /perm2/wo", content("/perm2/wo")},

		// New files created with a mode their user may not read or write.
		{"perm2: create /perm2/n200 READ|WRITE|CREAT|TRUNC perms 0200", rw("/perm2/n200", pfRead|pfWrite|pfCreat|pfTrunc, perms(0o200), "N200")},
		{"perm2: create /perm2/n444 WRITE|CREAT|TRUNC perms 0444", rw("/perm2/n444", pfWrite|pfCreat|pfTrunc, perms(0o444), "N444")},
		{"perm2: create /perm2/n000 READ|WRITE|CREAT|EXCL perms 0000", rw("/perm2/n000", pfRead|pfWrite|pfCreat|pfExcl, perms(0), "N000")},
		{"perm2: stat /perm2/n200", stat("/perm2/n200")},
		{"perm2: stat /perm2/n444", stat("/perm2/n444")},
		{"perm2: stat /perm2/n000", stat("/perm2/n000")},
		{"perm2: chmod the new files 0644", func(s *sftpSide) string {
			return chmod("/perm2/n200", 0o644)(s) + " " + chmod("/perm2/n444", 0o644)(s) + " " + chmod("/perm2/n000", 0o644)(s)
		}},
		{"perm2: content of the new files", func(s *sftpSide) string {
			return content("/perm2/n200")(s) + " " + content("/perm2/n444")(s) + " " + content("/perm2/n000")(s)
		}},

		// A handle open for writing on a file that becomes 0444.
		{"perm2: open /perm2/fs WRITE, chmod it 0444, write, fsetstat", func(s *sftpSide) string {
			if r := s.open(s.a, "fs", "/perm2/fs", pfWrite, attrs{}); r != "HANDLE" {
				return "open: " + r
			}
			out := chmod("/perm2/fs", 0o444)(s)
			r, err := s.a.write(s.h("fs"), 0, []byte("WRITTEN AFTER"))
			out += " write " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("fs"), size(7))
			out += " size " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("fs"), times(tAtime, tMtime))
			out += " times " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("fs"), perms(0o400))
			out += " mode " + s.res(r, err)
			return out + " close " + s.closeH(s.a, "fs")
		}},
		{"perm2: stat /perm2/fs", stat("/perm2/fs")},
		{"perm2: chmod /perm2/fs 0644", chmod("/perm2/fs", 0o644)},
		{"perm2: content /perm2/fs", content("/perm2/fs")},
		{"perm2: upload /perm2/fs, chmod it 0444 during, write, fsetstat, close", func(s *sftpSide) string {
			if r := s.open(s.a, "fs", "/perm2/fs", pfWrite|pfCreat|pfTrunc, attrs{}); r != "HANDLE" {
				return "open: " + r
			}
			out := chmod("/perm2/fs", 0o444)(s)
			r, err := s.a.write(s.h("fs"), 0, []byte("UPLOADED"))
			out += " write " + s.res(r, err)
			r, err = s.a.fsetstat(s.h("fs"), size(4))
			out += " size " + s.res(r, err)
			return out + " close " + s.closeH(s.a, "fs") + " " + stat("/perm2/fs")(s) + " " + content("/perm2/fs")(s)
		}},
		{"perm2: chmod /perm2/fs 0644 again", chmod("/perm2/fs", 0o644)},

		// copy-data into a file that became 0444 after its open, and
		// into a handle open for reading only.
		{"perm2: copy-data into /perm2/dst made 0444 after its open", func(s *sftpSide) string {
			if r := s.open(s.a, "cs", "/perm2/src", pfRead, attrs{}); r != "HANDLE" {
				return "open src: " + r
			}
			if r := s.open(s.a, "cd", "/perm2/dst", pfWrite, attrs{}); r != "HANDLE" {
				return "open dst: " + r
			}
			out := chmod("/perm2/dst", 0o444)(s) + " " + copyData(s)
			return out + " " + s.closeH(s.a, "cs") + " " + s.closeH(s.a, "cd") + " " + content("/perm2/dst")(s)
		}},
		{"perm2: copy-data into /perm2/dst (0444) open READ", func(s *sftpSide) string {
			if r := s.open(s.a, "cs", "/perm2/src", pfRead, attrs{}); r != "HANDLE" {
				return "open src: " + r
			}
			if r := s.open(s.a, "cd", "/perm2/dst", pfRead, attrs{}); r != "HANDLE" {
				return "open dst: " + r
			}
			out := copyData(s)
			return out + " " + s.closeH(s.a, "cs") + " " + s.closeH(s.a, "cd") + " " + content("/perm2/dst")(s)
		}},
		{"perm2: copy-data from /perm2/src (0200) open WRITE", func(s *sftpSide) string {
			out := chmod("/perm2/dst", 0o644)(s)
			if r := s.open(s.a, "cs", "/perm2/src", pfWrite, attrs{}); r != "HANDLE" {
				return "open src: " + r
			}
			if r := s.open(s.a, "cd", "/perm2/dst", pfWrite, attrs{}); r != "HANDLE" {
				return "open dst: " + r
			}
			out += " " + copyData(s)
			return out + " " + s.closeH(s.a, "cs") + " " + s.closeH(s.a, "cd") + " " + content("/perm2/dst")(s)
		}},

		// Hard links to a 0444 file: no upload through either name.
		{"perm2: hardlink /perm2/hl -> /perm2/hl2, chmod 0444", func(s *sftpSide) string {
			r, err := s.a.extended("hardlink@openssh.com", str(str(nil, s.p("/perm2/hl")), s.p("/perm2/hl2")))
			return s.res(r, err) + " " + chmod("/perm2/hl", 0o444)(s)
		}},
		{"perm2: upload over /perm2/hl2 (0444, linked)", upload("/perm2/hl2", pfWrite|pfCreat|pfTrunc, "NEW")},
		{"perm2: write into /perm2/hl2 (0444, linked)", upload("/perm2/hl2", pfWrite, "NEW")},
		{"perm2: content /perm2/hl and /perm2/hl2", func(s *sftpSide) string {
			return content("/perm2/hl")(s) + " " + content("/perm2/hl2")(s)
		}},
		{"perm2: chmod /perm2/hl 0644", chmod("/perm2/hl", 0o644)},

		// A directory mode 0555: an empty directory in it is not removed;
		// a directory of its own mode 0555 is not moved to another parent
		// (its ".." would change), but renamed in its parent.
		{"perm2: chmod /perm2/rod 0555", chmod("/perm2/rod", 0o555)},
		{"perm2: rmdir /perm2/rod/empty (in 0555)", rmdir("/perm2/rod/empty")},
		{"perm2: rename /perm2/rod/empty to /perm2/empty (from 0555)", rename("/perm2/rod/empty", "/perm2/empty")},
		{"perm2: chmod /perm2/rod 0755", chmod("/perm2/rod", 0o755)},
		{"perm2: chmod /perm2/mvd 0555", chmod("/perm2/mvd", 0o555)},
		{"perm2: rename /perm2/mvd (0555) to /perm2/other/mvd", rename("/perm2/mvd", "/perm2/other/mvd")},
		{"perm2: posix-rename /perm2/mvd (0555) to /perm2/other/mvd", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm2/mvd")), s.p("/perm2/other/mvd")))
			return s.res(r, err)
		}},
		{"perm2: rename /perm2/mvd (0555) to /perm2/mvd2 (same parent)", rename("/perm2/mvd", "/perm2/mvd2")},
		{"perm2: rename /perm2/mvd2/x to /perm2/x (0555)", rename("/perm2/mvd2/x", "/perm2/x")},
		{"perm2: rmdir /perm2/mvd2 (0555, not empty)", rmdir("/perm2/mvd2")},
		{"perm2: chmod /perm2/mvd2 0755, rename it back", func(s *sftpSide) string {
			return chmod("/perm2/mvd2", 0o755)(s) + " " + rename("/perm2/mvd2", "/perm2/mvd")(s)
		}},

		// mkdir with modes (umask 022), and into one its user may not
		// write.
		{"perm2: mkdir /perm2/m500 mode 0500", mkdir("/perm2/m500", perms(0o500))},
		{"perm2: stat /perm2/m500", stat("/perm2/m500")},
		{"perm2: mkdir /perm2/m500/sub", mkdir("/perm2/m500/sub", attrs{})},
		{"perm2: mkdir /perm2/m000 mode 0000", mkdir("/perm2/m000", perms(0))},
		{"perm2: stat /perm2/m000", stat("/perm2/m000")},
		{"perm2: readdir /perm2/m000", func(s *sftpSide) string { return s.listing(s.a, "/perm2/m000") }},
		{"perm2: rmdir /perm2/m000 (0000, empty)", rmdir("/perm2/m000")},
		{"perm2: mkdir /perm2/m1777 mode 01777", mkdir("/perm2/m1777", perms(0o1777))},
		{"perm2: stat /perm2/m1777", stat("/perm2/m1777")},
		{"perm2: mkdir /perm2/m666 mode 0666", mkdir("/perm2/m666", perms(0o666))},
		{"perm2: stat /perm2/m666", stat("/perm2/m666")},
		{"perm2: create /perm2/m666/f (no search)", upload("/perm2/m666/f", pfWrite|pfCreat|pfTrunc, "F")},
		{"perm2: chmod /perm2/m500 0755, /perm2/m666 0755", func(s *sftpSide) string {
			return chmod("/perm2/m500", 0o755)(s) + " " + chmod("/perm2/m666", 0o755)(s)
		}},

		// A directory mode 0000: statvfs in it, a link into it, a rename
		// out of it.
		{"perm2: symlink /perm2/lnc -> closed/f", func(s *sftpSide) string {
			r, err := s.a.symlink("closed/f", s.p("/perm2/lnc"))
			return s.res(r, err)
		}},
		{"perm2: chmod /perm2/closed 0000", chmod("/perm2/closed", 0)},
		{"perm2: statvfs /perm2/closed (0000)", statvfs("/perm2/closed")},
		{"perm2: statvfs /perm2/closed/f (0000)", statvfs("/perm2/closed/f")},
		{"perm2: statvfs /perm2/lnc (a link into 0000)", statvfs("/perm2/lnc")},
		{"perm2: statvfs /perm2/dst (mode 0000)", func(s *sftpSide) string {
			return chmod("/perm2/dst", 0)(s) + " " + statvfs("/perm2/dst")(s) + " " + chmod("/perm2/dst", 0o644)(s)
		}},
		{"perm2: stat /perm2/closed (0000)", stat("/perm2/closed")},
		{"perm2: lstat /perm2/lnc (into 0000)", lstat("/perm2/lnc")},
		{"perm2: stat /perm2/lnc (into 0000)", stat("/perm2/lnc")},
		{"perm2: readlink /perm2/lnc (into 0000)", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpReadlink, s.p("/perm2/lnc"))
			return s.res(r, err)
		}},
		{"perm2: open /perm2/lnc READ (into 0000)", upload("/perm2/lnc", pfRead, "")},
		{"perm2: upload over /perm2/lnc (into 0000)", upload("/perm2/lnc", pfWrite|pfCreat|pfTrunc, "L")},
		{"perm2: realpath /perm2/lnc (into 0000)", func(s *sftpSide) string {
			r, err := s.a.pathOp(fxpRealpath, s.p("/perm2/lnc"))
			return s.res(r, err)
		}},
		{"perm2: rename /perm2/closed/f out (0000)", rename("/perm2/closed/f", "/perm2/cf")},
		{"perm2: remove /perm2/closed/f (0000)", remove("/perm2/closed/f")},
		{"perm2: rename /perm2/closed (0000) to /perm2/other/closed", rename("/perm2/closed", "/perm2/other/closed")},
		{"perm2: rename /perm2/closed (0000) to /perm2/closed2", rename("/perm2/closed", "/perm2/closed2")},
		{"perm2: chmod /perm2/closed2 0755, rename it back", func(s *sftpSide) string {
			return chmod("/perm2/closed2", 0o755)(s) + " " + rename("/perm2/closed2", "/perm2/closed")(s)
		}},

		// Root's files and directory in the login's directory: a 0644
		// file (not writable), a 0755 directory (not writable).
		{"perm2: upload over root's 0644 file", func(s *sftpSide) string {
			if err := theirsMode(s.dir, "/perm2/r644", 0o644); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm2/r644", pfWrite|pfCreat|pfTrunc, "MINE")(s) + " " + content("/perm2/r644")(s) + " " + owner(s.dir, "/perm2/r644")
		}},
		{"perm2: open root's 0644 file READ|WRITE", upload("/perm2/r644", pfRead|pfWrite, "MINE")},
		{"perm2: append to root's 0644 file", upload("/perm2/r644", pfWrite|pfAppend, "MINE")},
		{"perm2: upload over root's 0602 file", func(s *sftpSide) string {
			if err := theirsMode(s.dir, "/perm2/r602", 0o602); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm2/r602", pfWrite|pfCreat|pfTrunc, "MINE")(s) + " " + owner(s.dir, "/perm2/r602")
		}},
		{"perm2: open root's 0602 file READ|WRITE|CREAT|TRUNC", upload("/perm2/r602", pfRead|pfWrite|pfCreat|pfTrunc, "MINE")},
		{"perm2: setstat size of root's 0644 file", func(s *sftpSide) string {
			r, err := s.a.setstat(s.p("/perm2/r644"), size(0))
			return s.res(r, err)
		}},
		{"perm2: posix-rename /perm2/src over root's 0644 file", func(s *sftpSide) string {
			r, err := s.a.extended("posix-rename@openssh.com", str(str(nil, s.p("/perm2/src")), s.p("/perm2/r644")))
			return s.res(r, err) + " " + content("/perm2/r644")(s)
		}},
		{"perm2: remove root's 0602 file", remove("/perm2/r602")},
		{"perm2: root's 0755 directory: create, mkdir, write a file of the login's in it", func(s *sftpSide) string {
			if r := s.with(func() string { return "OK" }, "/perm2/rdir/", "/perm2/rdir/mine=MINE"); r != "OK" {
				return "fixture: " + r
			}
			if err := os.Chown(filepath.Join(s.dir, "/perm2/rdir"), 0, 0); err != nil {
				return "fixture: " + err.Error()
			}
			return upload("/perm2/rdir/new", pfWrite|pfCreat|pfTrunc, "N")(s) + " " + mkdir("/perm2/rdir/sub", attrs{})(s) + " " +
				upload("/perm2/rdir/mine", pfWrite|pfCreat|pfTrunc, "SAVED")(s) + " " + content("/perm2/rdir/mine")(s)
		}},
		{"perm2: chmod root's directory", chmod("/perm2/rdir", 0o700)},
		{"perm2: rename root's directory to /perm2/other/rdir", rename("/perm2/rdir", "/perm2/other/rdir")},
		{"perm2: rename root's directory to /perm2/rdir2", rename("/perm2/rdir", "/perm2/rdir2")},
		{"perm2: remove /perm2/rdir2/mine (root's directory)", remove("/perm2/rdir2/mine")},
		{"perm2: readdir /perm2", func(s *sftpSide) string { return s.listing(s.a, "/perm2") }},
	}
}
