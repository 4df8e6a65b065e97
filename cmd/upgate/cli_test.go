package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/internal/syncbuf"
)

// TestSessionsAndKickCLI: a real FTP client's session shows in `upgate
// sessions` (table, --json and --by user) with its save latency, and `upgate kick`
// disconnects it.
func TestSessionsAndKickCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	addrs := freeAddrs(t, 2)
	ftpAddr, adminAddr := addrs[0], addrs[1]
	cmd := exec.Command(bin, "serve", "--listen.ftp", ftpAddr, "--listen.sftp", "", "--listen.admin", adminAddr)
	cmd.Dir = t.TempDir()
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var c *ftp.ServerConn
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if c, err = ftp.Dial(ftpAddr, ftp.DialWithTimeout(5*time.Second)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not up: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Quit()
	if err := c.Login("demo", "demo"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("upgate %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	table := run("sessions", "--admin", adminAddr)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("sessions table:\n%s", table)
	}
	if err := c.Stor("saved.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if out := run("sessions", "--admin", adminAddr); !strings.Contains(out, "SAVE LATENCY (open to commit, last 5m)") ||
		!regexp.MustCompile(`\ndemo +ftp +1 +\S+ +\S+ +\S+\n`).MatchString(out) {
		t.Errorf("sessions with a save:\n%s", out)
	}
	// --json: the sessions and the save latency, as /api/sessions has them.
	var all admin.SessionsResponse
	if out := run("sessions", "--admin", adminAddr, "--json"); json.Unmarshal([]byte(out), &all) != nil ||
		len(all.Sessions) != 1 || all.Sessions[0].User != "demo" || all.Sessions[0].Protocol != "ftp" ||
		all.Window != 5*time.Minute || len(all.Latency) != 1 {
		t.Errorf("sessions --json:\n%s", out)
	} else if l := all.Latency[0]; l.User != "demo" || l.Protocol != "ftp" || l.Count != 1 || l.P50 <= 0 || l.Max < l.P50 || len(l.Series) != 10 {
		t.Errorf("sessions --json: latency %+v", l)
	}
	fields := strings.Fields(lines[1])
	if fields[1] != "ftp" || fields[2] != "demo" || !strings.Contains(lines[1], "30s/10s/3 ut=1m0s") {
		t.Fatalf("session row: %q", lines[1])
	}
	if byUser := run("sessions", "--admin", adminAddr, "--by", "user"); !strings.Contains(byUser, "demo  1") {
		t.Errorf("--by user:\n%s", byUser)
	}
	if out := run("kick", "--admin", adminAddr, fields[0]); !strings.Contains(out, "kicked "+fields[0]) {
		t.Errorf("kick: %s", out)
	}
	if err := c.NoOp(); err == nil {
		t.Error("the kicked client still gets replies")
	}
	deadline = time.Now().Add(10 * time.Second)
	for strings.Contains(run("sessions", "--admin", adminAddr, "--by", "user"), "demo") {
		if time.Now().After(deadline) {
			t.Fatal("the kicked session is still listed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command(bin, "kick", "--admin", adminAddr, fields[0]).CombinedOutput(); err == nil || !strings.Contains(string(out), "404") {
		t.Errorf("kicking a gone session: %v %s", err, out)
	}
}
