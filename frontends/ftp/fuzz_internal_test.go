package ftp

// FuzzParseUTIME fuzzes the SITE UTIME argument parser, which ftpserverlib
// hands the raw rest of the command line.

import (
	"strings"
	"testing"
	"time"
)

// checkTime fails unless t is a UTC time the agent protocol carries
// unchanged: year 1 to 9999 and within int64 nanoseconds of the epoch.
func checkTime(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.Location() != time.UTC {
		t.Fatalf("%s: time %v is not in UTC", what, tm)
	}
	if y := tm.Year(); y < 1 || y > 9999 {
		t.Fatalf("%s: year %d outside 1-9999", what, y)
	}
	if back := time.Unix(0, tm.UnixNano()); !back.Equal(tm) {
		t.Fatalf("%s: time %v becomes %v in Unix nanoseconds", what, tm, back.UTC())
	}
}

func FuzzParseUTIME(f *testing.F) {
	for _, s := range []string{
		"", "20200101000000 file", "20200101000000.5 my file", "file 20200101000000 20200102000000 20200103000000 UTC",
		"my file 20200101000000 20200102000000 20200103000000 UTC", "20200101000000", "x 1 2 3 UTC",
		"file\t20200101000000\t20200102000000\t20200103000000\tUTC", "00000101000000 f", "99991231235959 f",
		"20201301000000 f", " 20200101000000  spaced  name ", "a b c d utc",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		if tm, err := parseFTPTime(args); err == nil {
			checkTime(t, "parseFTPTime("+args+")", tm)
		}
		name, mtime, err := parseUTIME(args)
		if err != nil {
			if name != "" || !mtime.IsZero() {
				t.Fatalf("parseUTIME(%q) = %q, %v with error %v", args, name, mtime, err)
			}
			return
		}
		if name == "" || strings.TrimSpace(name) != name {
			t.Fatalf("parseUTIME(%q): name %q is empty or padded", args, name)
		}
		if !strings.Contains(args, name) {
			t.Fatalf("parseUTIME(%q): name %q is not part of the arguments", args, name)
		}
		checkTime(t, "parseUTIME("+args+")", mtime)
	})
}
