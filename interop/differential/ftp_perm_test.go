package differential_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// theirs makes the file logical (under dir on disk) root's, mode 0666,
// with sticky in a directory of its own that is root's, mode 1777, as
// /tmp. The test runs as root.
func theirs(dir, logical string, sticky bool) error {
	p := filepath.Join(dir, logical)
	if sticky {
		d := filepath.Dir(p)
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
			return err
		}
	}
	if err := os.WriteFile(p, []byte("ROOT'S"), 0o666); err != nil {
		return err
	}
	return os.Chmod(p, 0o666)
}

// theirsMode makes the file logical (under dir on disk) root's, with
// mode perm.
func theirsMode(dir, logical string, perm os.FileMode) error {
	p := filepath.Join(dir, logical)
	if err := os.WriteFile(p, []byte("ROOT'S"), perm); err != nil {
		return err
	}
	return os.Chmod(p, perm)
}

// specialModes makes, on disk as root, a setuid file, a setgid file and
// a setgid directory (mode 2777) in logical (under dir), as a package or a
// colleague may have left them: upgate never sets these bits, but lists
// and stats them as they are, and the kernel's inheritance of a setgid
// directory's bit is not undone.
func specialModes(dir, logical string) error {
	d := filepath.Join(dir, logical)
	if err := os.Mkdir(d, 0o755); err != nil {
		return err
	}
	for name, mode := range map[string]os.FileMode{"suid": 0o755 | os.ModeSetuid, "sgid": 0o755 | os.ModeSetgid} {
		if err := os.WriteFile(filepath.Join(d, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(d, name), mode); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(d, "sgiddir"), 0o755); err != nil {
		return err
	}
	// World-writable, so that the login makes directories and files in
	// it, which inherit its group and (directories) its setgid bit.
	return os.Chmod(filepath.Join(d, "sgiddir"), 0o777|os.ModeSetgid)
}

// aclRW is a POSIX access ACL as the kernel stores it
// (system.posix_acl_access): user::rw-, user:1234:rw-, group::r--,
// mask::rw-, other::r--.
var aclRW = []byte{2, 0, 0, 0,
	1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
	2, 0, 6, 0, 0xd2, 0x04, 0, 0,
	4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
	0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
	0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff}

// setXattrs gives the file logical (under dir on disk) aclRW and a user
// attribute, as setfacl and setfattr would.
func setXattrs(dir, logical string) error {
	p := filepath.Join(dir, logical)
	if err := unix.Lsetxattr(p, "user.origin", []byte("https://example.com/f"), 0); err != nil {
		return err
	}
	return unix.Lsetxattr(p, "system.posix_acl_access", aclRW, 0)
}

// xattrs shows the file's user.origin and whether its ACL is aclRW.
func xattrs(dir, logical string) string {
	p := filepath.Join(dir, logical)
	get := func(name string) string {
		b := make([]byte, 256)
		n, err := unix.Lgetxattr(p, name, b)
		if err != nil {
			return err.Error()
		}
		return string(b[:n])
	}
	return fmt.Sprintf("user.origin=%q acl kept=%v", get("user.origin"), get("system.posix_acl_access") == string(aclRW))
}

// owner says whose the file logical (under dir on disk) is now: root's,
// or another's (the login's, or the agent's user's).
func owner(dir, logical string) string {
	st, err := os.Lstat(filepath.Join(dir, logical))
	if err != nil {
		return "owner: " + err.Error()
	}
	if st.Sys().(*syscall.Stat_t).Uid == 0 {
		return "owner root"
	}
	return fmt.Sprintf("owner not root, mode %04o", st.Mode().Perm())
}

// ftpPermSteps are the steps where the kernel's permission checks
// decide, as the files' owner who is not root (vsftpd's login, upgate's
// agent process): a file mode 0444 or 0000, a directory mode 0555 or
// 0000. Failures are compared by their exact code. The modes are put
// back at the end.
func ftpPermSteps() []ftpStep {
	cmd := func(line string) func(f *ftpSide) string {
		return func(f *ftpSide) string { return f.c(line, exact) }
	}
	// put uploads data with verb (STOR, APPE) and shows every reply's
	// code, the final one exactly.
	put := func(verb, path, data string) func(f *ftpSide) string {
		return func(f *ftpSide) string {
			reps, _, err := f.a.transfer(verb+" "+path, []byte(data))
			return xfer(reps, nil, err, exact, false)
		}
	}
	get := func(path string) func(f *ftpSide) string {
		return func(f *ftpSide) string {
			reps, data, err := f.a.transfer("RETR "+path, nil)
			return xfer(reps, data, err, exact, true)
		}
	}
	list := func(line string) func(f *ftpSide) string {
		return func(f *ftpSide) string { return f.list(line, false) }
	}
	return append([]ftpStep{
		{"perm: fixtures", func(f *ftpSide) string {
			return f.c("MKD /perm", digit) + " " + f.stor("/perm/ro", []byte("READ ONLY")) + " " +
				f.stor("/perm/rw", []byte("RW")) + " " + f.stor("/perm/secret", []byte("SECRET")) + " " +
				f.c("MKD /perm/rodir", digit) + " " + f.stor("/perm/rodir/in", []byte("IN")) + " " +
				f.stor("/perm/rodir/ro", []byte("RO IN RODIR")) + " " +
				f.c("MKD /perm/closed", digit) + " " + f.stor("/perm/closed/f", []byte("F"))
		}},

		// A file mode 0444: not written, in place or replaced.
		{"perm: SITE CHMOD 444 /perm/ro", cmd("SITE CHMOD 444 /perm/ro")},
		{"perm: STOR /perm/ro (0444)", put("STOR", "/perm/ro", "REPLACED")},
		{"perm: STOR /perm/rw, then STOR /perm/ro (0444) after it", func(f *ftpSide) string {
			return f.stor("/perm/rw", []byte("RW2")) + " " + put("STOR", "/perm/ro", "REPLACED")(f)
		}},
		{"perm: APPE /perm/ro (0444)", put("APPE", "/perm/ro", "MORE")},
		{"perm: REST 2 + STOR /perm/ro (0444)", func(f *ftpSide) string {
			return f.c("REST 2", exact) + " " + put("STOR", "/perm/ro", "XX")(f)
		}},
		{"perm: RETR /perm/ro (0444)", get("/perm/ro")},
		{"perm: MFMT /perm/ro (0444, its owner)", cmd("MDTM 20041109113320 /perm/ro")},
		{"perm: SIZE /perm/ro", func(f *ftpSide) string { return f.c("SIZE /perm/ro", text) }},
		{"perm: RNFR /perm/rw RNTO /perm/ro (over 0444)", func(f *ftpSide) string {
			return f.c("RNFR /perm/rw", exact) + " " + f.c("RNTO /perm/ro", exact) + " " + get("/perm/ro")(f)
		}},

		// A file mode 0000, then 0200.
		{"perm: SITE CHMOD 000 /perm/secret", cmd("SITE CHMOD 000 /perm/secret")},
		{"perm: RETR /perm/secret (0000)", get("/perm/secret")},
		{"perm: SIZE /perm/secret (0000)", func(f *ftpSide) string { return f.c("SIZE /perm/secret", text) }},
		{"perm: SITE CHMOD 200 /perm/secret", cmd("SITE CHMOD 200 /perm/secret")},
		{"perm: STOR /perm/secret (0200)", put("STOR", "/perm/secret", "NEW SECRET")},
		{"perm: SITE CHMOD 600 /perm/secret", cmd("SITE CHMOD 600 /perm/secret")},
		{"perm: RETR /perm/secret", get("/perm/secret")},

		// A directory mode 0555: nothing created, removed or renamed in
		// it; a writable file in it is written.
		{"perm: SITE CHMOD 555 /perm/rodir", cmd("SITE CHMOD 555 /perm/rodir")},
		{"perm: STOR /perm/rodir/new (0555)", put("STOR", "/perm/rodir/new", "NEW")},
		{"perm: MKD /perm/rodir/sub (0555)", cmd("MKD /perm/rodir/sub")},
		{"perm: DELE /perm/rodir/in (0555)", cmd("DELE /perm/rodir/in")},
		{"perm: RNFR /perm/rodir/in RNTO /perm/out (0555)", func(f *ftpSide) string {
			return f.c("RNFR /perm/rodir/in", exact) + " " + f.c("RNTO /perm/out", exact)
		}},
		{"perm: RNFR /perm/rw2 RNTO /perm/rodir/rw (0555)", func(f *ftpSide) string {
			return f.stor("/perm/rw2", []byte("RW2")) + " " + f.c("RNFR /perm/rw2", exact) + " " + f.c("RNTO /perm/rodir/rw", exact)
		}},
		{"perm: STOR /perm/rodir/in (a writable file in 0555)", put("STOR", "/perm/rodir/in", "IN, SAVED")},
		{"perm: STOR /perm/rodir/in again, after that upload", put("STOR", "/perm/rodir/in", "IN, SAVED TWICE")},
		{"perm: APPE /perm/rodir/in (0555)", put("APPE", "/perm/rodir/in", "+")},
		{"perm: RETR /perm/rodir/in", get("/perm/rodir/in")},
		{"perm: STOR /perm/rodir/ro (0444 in 0555)", func(f *ftpSide) string {
			return f.c("SITE CHMOD 444 /perm/rodir/ro", exact) + " " + put("STOR", "/perm/rodir/ro", "X")(f)
		}},
		{"perm: LIST /perm/rodir", list("LIST /perm/rodir")},

		// Another user's file (root's, mode 0666) that the login may
		// write, and one in a sticky directory (root's 1777, as /tmp):
		// saved over, it stays root's.
		{"perm: STOR over root's 0666 file", func(f *ftpSide) string {
			if err := theirs(f.dir, "/perm/theirs", false); err != nil {
				return "fixture: " + err.Error()
			}
			return put("STOR", "/perm/theirs", "SAVED OVER")(f) + " " + get("/perm/theirs")(f) + " " + owner(f.dir, "/perm/theirs")
		}},
		{"perm: STOR over root's 0666 file in a 1777 directory", func(f *ftpSide) string {
			if err := theirs(f.dir, "/perm/tmp/theirs", true); err != nil {
				return "fixture: " + err.Error()
			}
			return put("STOR", "/perm/tmp/theirs", "SAVED IN TMP")(f) + " " + get("/perm/tmp/theirs")(f) + " " +
				owner(f.dir, "/perm/tmp/theirs")
		}},
		{"perm: STOR over a file with an ACL and a user attribute", func(f *ftpSide) string {
			if err := setXattrs(f.dir, "/perm/rw2"); err != nil {
				return "fixture: " + err.Error()
			}
			return put("STOR", "/perm/rw2", "SAVED")(f) + " " + xattrs(f.dir, "/perm/rw2")
		}},
		{"perm: SITE CHMOD 600 root's file", cmd("SITE CHMOD 600 /perm/theirs")},
		{"perm: MFMT root's file", cmd("MDTM 20041109113320 /perm/theirs")},
		{"perm: DELE root's file in a 1777 directory", cmd("DELE /perm/tmp/theirs")},

		// A directory mode 0000: nothing in it reached or listed.
		{"perm: SITE CHMOD 000 /perm/closed", cmd("SITE CHMOD 000 /perm/closed")},
		{"perm: LIST /perm/closed (0000)", list("LIST /perm/closed")},
		{"perm: NLST /perm/closed (0000)", list("NLST /perm/closed")},
		{"perm: CWD /perm/closed (0000)", cmd("CWD /perm/closed")},
		{"perm: RETR /perm/closed/f (0000)", get("/perm/closed/f")},
		{"perm: SIZE /perm/closed/f (0000)", func(f *ftpSide) string { return f.c("SIZE /perm/closed/f", text) }},
		{"perm: STOR /perm/closed/g (0000)", put("STOR", "/perm/closed/g", "G")},
		{"perm: RMD /perm/closed (0000, not empty)", cmd("RMD /perm/closed")},

		// Modes back, and what is left.
		{"perm: SITE CHMOD 755 /perm/closed", cmd("SITE CHMOD 755 /perm/closed")},
		{"perm: SITE CHMOD 755 /perm/rodir", cmd("SITE CHMOD 755 /perm/rodir")},
		{"perm: DELE /perm/ro (0444)", cmd("DELE /perm/ro")},
		{"perm: LIST of setuid and setgid files and a setgid directory", func(f *ftpSide) string {
			if err := specialModes(f.dir, "/perm/special"); err != nil {
				return "fixture: " + err.Error()
			}
			return list("LIST /perm/special")(f) + " " + f.c("SIZE /perm/special/suid", text)
		}},
		{"perm: MKD and STOR in a setgid directory", func(f *ftpSide) string {
			return f.c("MKD /perm/special/sgiddir/sub", digit) + " " + f.stor("/perm/special/sgiddir/f", []byte("F")) + " " +
				f.c("SITE CHMOD 750 /perm/special/sgiddir/sub", exact) + " " + list("LIST /perm/special/sgiddir")(f)
		}},
		{"perm: LIST /perm", list("LIST /perm")},
	}, ftpPerm2Steps(cmd, put, get, list)...)
}

// ftpPerm2Steps are more steps of the same kind, under /perm2, each
// leaving the modes as it found them.
func ftpPerm2Steps(cmd func(string) func(*ftpSide) string, put func(verb, path, data string) func(*ftpSide) string,
	get func(string) func(*ftpSide) string, list func(string) func(*ftpSide) string) []ftpStep {
	ctext := func(line string) func(f *ftpSide) string {
		return func(f *ftpSide) string { return f.c(line, text) }
	}
	mdtm := func(line string) func(f *ftpSide) string {
		return func(f *ftpSide) string { return f.c(line, mdtmText) }
	}
	seq := func(steps ...func(f *ftpSide) string) func(f *ftpSide) string {
		return func(f *ftpSide) string {
			var l []string
			for _, st := range steps {
				l = append(l, st(f))
			}
			return strings.Join(l, " ")
		}
	}
	return []ftpStep{
		{"perm2: fixtures", func(f *ftpSide) string {
			return f.c("MKD /perm2", digit) + " " + f.stor("/perm2/wo", []byte("WO")) + " " + f.stor("/perm2/hl", []byte("HARD")) + " " +
				f.c("MKD /perm2/rod", digit) + " " + f.c("MKD /perm2/rod/empty", digit) + " " + f.c("MKD /perm2/mvd", digit) + " " +
				f.c("MKD /perm2/other", digit) + " " + f.c("MKD /perm2/d300", digit) + " " + f.stor("/perm2/d300/f", []byte("F300")) + " " +
				f.c("MKD /perm2/closed", digit) + " " + f.stor("/perm2/closed/f", []byte("F")) + " " + f.c("MKD /perm2/m000", digit)
		}},

		// A file mode 0200 (write only): appended, written from an
		// offset, not read.
		{"perm2: SITE CHMOD 200 /perm2/wo", cmd("SITE CHMOD 200 /perm2/wo")},
		{"perm2: APPE /perm2/wo (0200)", put("APPE", "/perm2/wo", "+A")},
		{"perm2: REST 2 + STOR /perm2/wo (0200)", seq(cmd("REST 2"), put("STOR", "/perm2/wo", "xy"))},
		{"perm2: RETR /perm2/wo (0200)", get("/perm2/wo")},
		{"perm2: REST 1 + RETR /perm2/wo (0200)", seq(cmd("REST 1"), get("/perm2/wo"))},
		{"perm2: SIZE /perm2/wo (0200)", ctext("SIZE /perm2/wo")},
		{"perm2: MDTM /perm2/wo (0200)", mdtm("MDTM /perm2/wo")},
		{"perm2: SITE CHMOD 600 /perm2/wo", cmd("SITE CHMOD 600 /perm2/wo")},
		{"perm2: RETR /perm2/wo", get("/perm2/wo")},

		// A directory mode 0555: nothing appended into being, no empty
		// directory removed or moved out.
		{"perm2: SITE CHMOD 555 /perm2/rod", cmd("SITE CHMOD 555 /perm2/rod")},
		{"perm2: APPE /perm2/rod/new (0555)", put("APPE", "/perm2/rod/new", "NEW")},
		{"perm2: REST 0 + STOR /perm2/rod/new (0555)", seq(cmd("REST 0"), put("STOR", "/perm2/rod/new", "NEW"))},
		{"perm2: RMD /perm2/rod/empty (in 0555)", cmd("RMD /perm2/rod/empty")},
		{"perm2: RNFR /perm2/rod/empty RNTO /perm2/empty (from 0555)", seq(cmd("RNFR /perm2/rod/empty"), cmd("RNTO /perm2/empty"))},
		{"perm2: SITE CHMOD 755 /perm2/rod", cmd("SITE CHMOD 755 /perm2/rod")},

		// A directory of its own mode 0555: renamed in its parent, not
		// moved to another.
		{"perm2: SITE CHMOD 555 /perm2/mvd", cmd("SITE CHMOD 555 /perm2/mvd")},
		{"perm2: RNFR /perm2/mvd RNTO /perm2/other/mvd (0555)", seq(cmd("RNFR /perm2/mvd"), cmd("RNTO /perm2/other/mvd"))},
		{"perm2: RNFR /perm2/mvd RNTO /perm2/mvd2 (0555, same parent)", seq(cmd("RNFR /perm2/mvd"), cmd("RNTO /perm2/mvd2"))},
		{"perm2: SITE CHMOD 755 /perm2/mvd2, rename it back", seq(cmd("SITE CHMOD 755 /perm2/mvd2"), cmd("RNFR /perm2/mvd2"), cmd("RNTO /perm2/mvd"))},

		// A directory its user owns, mode 0000: listed in its parent,
		// not itself; removed when empty.
		{"perm2: SITE CHMOD 000 /perm2/m000", cmd("SITE CHMOD 000 /perm2/m000")},
		{"perm2: LIST /perm2 (m000 is 0000)", list("LIST /perm2")},
		{"perm2: MDTM /perm2/m000 (0000)", mdtm("MDTM /perm2/m000")},
		{"perm2: STOR /perm2/m000/x (0000)", put("STOR", "/perm2/m000/x", "X")},
		{"perm2: MKD /perm2/m000/x (0000)", cmd("MKD /perm2/m000/x")},
		{"perm2: RMD /perm2/m000 (0000, empty)", cmd("RMD /perm2/m000")},

		// Hard links to a 0444 file: no upload through either name.
		{"perm2: hard link /perm2/hl2 to a 0444 file", func(f *ftpSide) string {
			if err := os.Link(filepath.Join(f.dir, "/perm2/hl"), filepath.Join(f.dir, "/perm2/hl2")); err != nil {
				return "fixture: " + err.Error()
			}
			return cmd("SITE CHMOD 444 /perm2/hl")(f)
		}},
		{"perm2: STOR /perm2/hl2 (0444, linked)", put("STOR", "/perm2/hl2", "NEW")},
		{"perm2: APPE /perm2/hl2 (0444, linked)", put("APPE", "/perm2/hl2", "NEW")},
		{"perm2: RETR /perm2/hl and /perm2/hl2", seq(get("/perm2/hl"), get("/perm2/hl2"))},
		{"perm2: SITE CHMOD 644 /perm2/hl", cmd("SITE CHMOD 644 /perm2/hl")},

		// A directory mode 0300 (write and search, no read).
		{"perm2: SITE CHMOD 300 /perm2/d300", cmd("SITE CHMOD 300 /perm2/d300")},
		{"perm2: SIZE /perm2/d300/f (0300)", ctext("SIZE /perm2/d300/f")},
		{"perm2: MDTM /perm2/d300/f (0300)", mdtm("MDTM /perm2/d300/f")},
		{"perm2: RETR /perm2/d300/f (0300)", get("/perm2/d300/f")},
		{"perm2: LIST /perm2/d300 (0300)", list("LIST /perm2/d300")},
		{"perm2: NLST /perm2/d300 (0300)", list("NLST /perm2/d300")},
		{"perm2: STOR /perm2/d300/g (0300)", put("STOR", "/perm2/d300/g", "G")},
		// DELE is one unlinkat in the directory, opened O_PATH (which
		// needs no read bit), as vsftpd's unlink(2).
		{"perm2: DELE /perm2/d300/f (0300)", cmd("DELE /perm2/d300/f")},
		// (what is left in it differs, by the STOR: g goes.)
		{"perm2: SITE CHMOD 755 /perm2/d300, f and g removed on disk", func(f *ftpSide) string {
			r := cmd("SITE CHMOD 755 /perm2/d300")(f)
			for _, n := range []string{"f", "g"} {
				if err := os.Remove(filepath.Join(f.dir, "/perm2/d300", n)); err != nil && !os.IsNotExist(err) {
					return r + " " + err.Error()
				}
			}
			return r
		}},

		// A directory mode 0000: a rename out of it, a link into it.
		{"perm2: link /perm2/lnc -> closed/f, SITE CHMOD 000 /perm2/closed", func(f *ftpSide) string {
			if err := os.Symlink("closed/f", filepath.Join(f.dir, "/perm2/lnc")); err != nil {
				return "fixture: " + err.Error()
			}
			return cmd("SITE CHMOD 000 /perm2/closed")(f)
		}},
		{"perm2: RNFR /perm2/closed/f (0000)", cmd("RNFR /perm2/closed/f")},
		{"perm2: RNTO /perm2/cf after it", cmd("RNTO /perm2/cf")},
		{"perm2: DELE /perm2/closed/f (0000)", cmd("DELE /perm2/closed/f")},
		{"perm2: RETR /perm2/lnc (into 0000)", get("/perm2/lnc")},
		{"perm2: SIZE /perm2/lnc (into 0000)", ctext("SIZE /perm2/lnc")},
		{"perm2: MDTM /perm2/lnc (into 0000)", mdtm("MDTM /perm2/lnc")},
		{"perm2: STOR /perm2/lnc (into 0000)", put("STOR", "/perm2/lnc", "L")},
		{"perm2: RNFR /perm2/closed RNTO /perm2/other/closed (0000)", seq(cmd("RNFR /perm2/closed"), cmd("RNTO /perm2/other/closed"))},
		{"perm2: RNFR /perm2/closed RNTO /perm2/closed2 (0000)", seq(cmd("RNFR /perm2/closed"), cmd("RNTO /perm2/closed2"))},
		{"perm2: SITE CHMOD 755 /perm2/closed2, rename it back", seq(cmd("SITE CHMOD 755 /perm2/closed2"), cmd("RNFR /perm2/closed2"), cmd("RNTO /perm2/closed"))},

		// Root's 0644 file and 0755 directory in the login's directory.
		{"perm2: STOR over root's 0644 file", func(f *ftpSide) string {
			if err := theirsMode(f.dir, "/perm2/r644", 0o644); err != nil {
				return "fixture: " + err.Error()
			}
			return put("STOR", "/perm2/r644", "MINE")(f) + " " + get("/perm2/r644")(f) + " " + owner(f.dir, "/perm2/r644")
		}},
		{"perm2: APPE to root's 0644 file", put("APPE", "/perm2/r644", "MINE")},
		{"perm2: REST 2 + STOR root's 0644 file", seq(cmd("REST 2"), put("STOR", "/perm2/r644", "MINE"))},
		{"perm2: SITE CHMOD 600 root's 0644 file", cmd("SITE CHMOD 600 /perm2/r644")},
		{"perm2: DELE root's 0644 file", cmd("DELE /perm2/r644")},
		{"perm2: MKD /perm2/rdir, STOR /perm2/rdir/mine, made root's", func(f *ftpSide) string {
			r := f.c("MKD /perm2/rdir", digit) + " " + f.stor("/perm2/rdir/mine", []byte("MINE"))
			if err := os.Chown(filepath.Join(f.dir, "/perm2/rdir"), 0, 0); err != nil {
				return "fixture: " + err.Error()
			}
			return r
		}},
		{"perm2: STOR into root's 0755 directory, right after an upload into it", put("STOR", "/perm2/rdir/new", "N")},
		{"perm2: STOR /perm2/hl, then STOR, APPE, MKD in root's 0755 directory", func(f *ftpSide) string {
			return f.stor("/perm2/hl", []byte("HARD")) + " " + put("STOR", "/perm2/rdir/new", "N")(f) + " " +
				put("APPE", "/perm2/rdir/new2", "N")(f) + " " + cmd("MKD /perm2/rdir/sub")(f)
		}},
		{"perm2: STOR the login's file in root's 0755 directory", func(f *ftpSide) string {
			return put("STOR", "/perm2/rdir/mine", "SAVED")(f) + " " + get("/perm2/rdir/mine")(f)
		}},
		{"perm2: RNFR root's directory RNTO /perm2/other/rdir", seq(cmd("RNFR /perm2/rdir"), cmd("RNTO /perm2/other/rdir"))},
		{"perm2: DELE /perm2/rdir/mine (root's directory)", cmd("DELE /perm2/rdir/mine")},
		{"perm2: LIST /perm2", list("LIST /perm2")},
	}
}
