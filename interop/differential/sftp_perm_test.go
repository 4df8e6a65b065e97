package differential_test

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
	return []sftpStep{
		{"perm: fixtures", func(s *sftpSide) string {
			return s.with(func() string { return "OK" },
				"/perm/", "/perm/ro=READ ONLY", "/perm/rw=RW", "/perm/secret=SECRET", "/perm/rodir/", "/perm/rodir/in=IN",
				"/perm/rodir/ro=RO IN RODIR", "/perm/closed/", "/perm/closed/f=F")
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
		{"perm: chmod /perm/secret 0600", chmod("/perm/secret", 0o600)},
		{"perm: content /perm/secret", content("/perm/secret")},

		// A directory mode 0555: nothing in it may be created, removed or
		// renamed, but a writable file in it may be written.
		{"perm: chmod /perm/rodir 0555", chmod("/perm/rodir", 0o555)},
		{"perm: create /perm/rodir/new", upload("/perm/rodir/new", pfWrite|pfCreat|pfTrunc, "NEW")},
		{"perm: create /perm/rodir/excl (EXCL)", upload("/perm/rodir/excl", pfWrite|pfCreat|pfExcl, "NEW")},
		{"perm: mkdir /perm/rodir/sub", func(s *sftpSide) string { r, err := s.a.mkdir(s.p("/perm/rodir/sub"), attrs{}); return s.res(r, err) }},
		{"perm: symlink /perm/rodir/ln", func(s *sftpSide) string { r, err := s.a.symlink("in", s.p("/perm/rodir/ln")); return s.res(r, err) }},
		{"perm: remove /perm/rodir/in", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/perm/rodir/in")); return s.res(r, err) }},
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
		{"perm: remove /perm/ro (0444)", func(s *sftpSide) string { r, err := s.a.pathOp(fxpRemove, s.p("/perm/ro")); return s.res(r, err) }},
		{"perm: readdir /perm", func(s *sftpSide) string { return s.listing(s.a, "/perm") }},
	}
}
