package differential_test

import (
	"fmt"
	"os"
	"path/filepath"
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
	return []ftpStep{
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
		{"perm: LIST /perm", list("LIST /perm")},
	}
}
