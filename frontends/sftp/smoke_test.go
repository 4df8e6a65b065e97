package sftp_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestPutGet(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e, "alice")
	data := bytes.Repeat([]byte("upgate sftp "), 300000)
	f, err := c.Create("/app.php")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(e.UserDir("alice"), "app.php"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file in the agent: %d bytes, %v", len(got), err)
	}
	r, err := c.Open("/app.php")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes: %v", len(back), err)
	}
	e.AgentIdle(t)
}
