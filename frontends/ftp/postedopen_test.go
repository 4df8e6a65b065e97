package ftp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upgate/upgate/internal/agenttest"
)

// TestCmdStorPostedOpen: a STOR into the directory of the session's last
// upload opens without waiting for the agent
// (gateway.Protocol.PostUploadOpens), and its file lands as any other.
// Where the directory was taken away behind the session's back meanwhile,
// that STOR answers 150 and then fails (vsftpd fails it before the 150),
// leaving nothing. A STOR into a directory the session has not uploaded
// to (an append is no upload), after such a failure, or after the session
// renamed the directory away fails before the 150, as on vsftpd, and so
// does one of a name the agent refuses or one too long.
func TestCmdStorPostedOpen(t *testing.T) {
	e := start(t, nil)
	c := ctlLogin(t, e, "alice")
	c.must(200, "TYPE I")
	site := putDir(t, e, "alice", "site", 0o755)
	// before150 checks that STOR name fails at once, with no 150.
	before150 := func(name string) {
		t.Helper()
		dc := c.pasv()
		defer dc.Close()
		code, msg := c.cmd("STOR %s", name)
		if code == 150 {
			_, _ = dc.Write([]byte("<?php // lost"))
			dc.Close()
			code, msg = c.read()
			t.Errorf("STOR %q: 150, then %d %s; want a 5xx before any 150", name, code, msg)
			return
		}
		if code < 500 {
			t.Errorf("STOR %q: %d %s, want a 5xx before any 150", name, code, msg)
		}
	}

	before150("/missing/a.php")
	a, b := noise(t, 3000), noise(t, 70_000)
	c.put(a, "STOR /site/a.php") // waits for the agent: the first upload there
	c.put(b, "STOR /site/b.php") // posted
	wantFile(t, filepath.Join(site, "a.php"), a)
	wantFile(t, filepath.Join(site, "b.php"), b)
	// A name the agent refuses is refused before the 150, as on vsftpd...
	before150("/site/del\x7fname.php")
	before150("/site/" + strings.Repeat("L", 256))
	c.put(a, "STOR /site/a2.php") // (posted again)

	// The directory goes behind the session's back: the posted open fails
	// after the 150, and the STOR with it.
	if err := os.RemoveAll(site); err != nil {
		t.Fatal(err)
	}
	dc := c.pasv()
	c.must(150, "STOR /site/c.php")
	_, _ = dc.Write(noise(t, 5000)) // may fail: the server may have closed
	dc.Close()
	code, msg := c.read()
	t.Logf("STOR into a directory removed meanwhile: 150, then %d %s", code, msg)
	if code < 400 || !strings.Contains(strings.ToLower(msg), "no such file") {
		t.Errorf("STOR into a directory removed meanwhile, after its 150: %d %s, want a failure naming the missing directory", code, msg)
	}
	before150("/site/d.php") // the failure ended the posting

	// An append creates nothing in its directory: it proves nothing of a
	// new file there, and the next STOR waits.
	putFile(t, e, "alice", "ap/log.txt", []byte("one\n"), 0o644)
	c.put([]byte("two\n"), "APPE /ap/log.txt")
	if err := os.RemoveAll(filepath.Join(e.UserDir("alice"), "ap")); err != nil {
		t.Fatal(err)
	}
	before150("/ap/new.php")

	// The session renames the directory away: the next STOR there waits.
	putDir(t, e, "alice", "site", 0o755)
	c.put(a, "STOR /site/e.php")
	c.must(350, "RNFR /site")
	c.must(250, "RNTO /site2")
	before150("/site/f.php")
	wantFile(t, filepath.Join(e.UserDir("alice"), "site2", "e.php"), a)
	if tmp := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}
