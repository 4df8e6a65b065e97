package webdav_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"fmt"
	"hash/adler32"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/agenttest"
)

// TestOCChecksum: a PUT with OC-Checksum (ownCloud's and Nextcloud's
// clients, rclone's owncloud and nextcloud vendors) is written only if
// its content matches; one that does not is refused (400) and the old
// file stays, as ownCloud's server refuses it. A type upgate does not
// compute is let through unchecked; a known type with a digest that is
// not one is refused.
func TestOCChecksum(t *testing.T) {
	e := start(t, nil)
	body := bytes.Repeat([]byte("checksum body\n"), 80_000) // over 1 MiB: many reads
	put := func(name, sum string, data []byte, hdr ...string) reply {
		t.Helper()
		return e.do(t, "alice", "PUT", name, bytes.NewReader(data), append([]string{"OC-Checksum", sum}, hdr...)...)
	}
	for _, tc := range []struct{ name, sum string }{
		{"/sha1", fmt.Sprintf("SHA1:%x", sha1.Sum(body))},
		{"/md5", fmt.Sprintf("md5:%x", md5.Sum(body))},
		{"/sha256", fmt.Sprintf("SHA256:%x", sha256.Sum256(body))},
		{"/sha3", fmt.Sprintf("SHA3-256:%x", sha3.Sum256(body))},
		{"/adler", fmt.Sprintf("Adler32:%x", adler32.Checksum(body))},
		{"/adler0", fmt.Sprintf("ADLER32:%x", adler32.Checksum([]byte("a")))}, // 620062: fewer than 8 digits
		{"/unknown", "CRC64:0123"},
		{"/several", fmt.Sprintf("SHA1:%x MD5:%x CRC64:0123", sha1.Sum(body), md5.Sum(body))},
	} {
		data := body
		if tc.name == "/adler0" {
			data = []byte("a")
		}
		put(tc.name, tc.sum, data).want(t, "PUT "+tc.name+" with "+tc.sum, http.StatusCreated)
		wantFile(t, e, "alice", tc.name[1:], data)
	}

	old := time.Unix(1_000_000_000, 0)
	if err := os.Chtimes(filepath.Join(e.UserDir("alice"), "sha1"), old, old); err != nil {
		t.Fatal(err)
	}
	changed := append(bytes.Clone(body[:len(body)-1]), '!')
	for _, tc := range []struct{ what, sum string }{
		{"a body that does not match its SHA1", fmt.Sprintf("SHA1:%x", sha1.Sum(body))},
		{"a body that does not match its Adler32", fmt.Sprintf("Adler32:%x", adler32.Checksum(body))},
		{"a SHA1 that is not hex", "SHA1:not-hex"},
		{"a SHA1 too short", "SHA1:abcd"},
		{"no type", "deadbeef"},
		{"a good MD5 beside a bad SHA1", fmt.Sprintf("MD5:%x SHA1:%x", md5.Sum(changed), sha1.Sum(body))},
	} {
		put("/sha1", tc.sum, changed, "X-OC-Mtime", "1500000000").want(t, "PUT /sha1: "+tc.what, http.StatusBadRequest)
		wantFile(t, e, "alice", "sha1", body)
		fi, err := os.Stat(filepath.Join(e.UserDir("alice"), "sha1"))
		if err != nil || !fi.ModTime().Equal(old) {
			t.Errorf("%s: the old file's mtime changed: %v, %v", tc.what, fi.ModTime(), err)
		}
	}
	r := put("/new", fmt.Sprintf("SHA1:%x", sha1.Sum(body)), changed)
	r.want(t, "PUT /new, a body that does not match", http.StatusBadRequest, "does not match")
	if _, err := os.Stat(filepath.Join(e.UserDir("alice"), "new")); !os.IsNotExist(err) {
		t.Errorf("/new after a refused upload: %v, want it missing", err)
	}
	e.AgentIdle(t) // an abort reaches the agent after the answer
	if left := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(left) > 0 {
		t.Errorf("temp files left: %q", left)
	}
}
