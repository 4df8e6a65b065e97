package server_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestAdaptiveProcs: with cpu.adaptive, the process runs one Go P while no
// session works, stays there while logged-in FTP clients only send NOOPs,
// runs one per working session (up to the CPUs) while two clients upload
// at once, falls back once they are quiet, and gets the runtime's default
// back at shutdown. The uploads land whole.
func TestAdaptiveProcs(t *testing.T) {
	if n, err := strconv.ParseInt(os.Getenv("GOMAXPROCS"), 10, 32); err == nil && n > 0 {
		t.Skip("GOMAXPROCS is set in the environment: cpu.adaptive does not apply")
	}
	ceiling := runtime.GOMAXPROCS(0)
	if ceiling < 2 {
		t.Skipf("the runtime has %d P: nothing to adapt", ceiling)
	}
	root := t.TempDir()
	cfg := gwtest.Config(t, root, map[string]string{"alice": "pw", "bob": "pw"})
	cfg.CPU.Adaptive = true // gwtest turns it off
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	t.Cleanup(func() { // runs after gwtest.Run's shutdown
		if n := runtime.GOMAXPROCS(0); n != ceiling {
			t.Errorf("GOMAXPROCS %d after shutdown, want the runtime's default %d back", n, ceiling)
		}
	})
	srv := gwtest.Run(t, cfg)
	waitFor(t, "one P with no session at work", func() bool { return runtime.GOMAXPROCS(0) == 1 })

	login := func(user string) *ftp.ServerConn {
		t.Helper()
		c, err := ftp.Dial(srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Quit() })
		if err := c.Login(user, "pw"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	clients := []*ftp.ServerConn{login("alice"), login("bob")}
	noops := func() { // a keepalive from each client
		t.Helper()
		for _, c := range clients {
			if err := c.NoOp(); err != nil {
				t.Fatal(err)
			}
		}
	}
	procsAre := func(n int) bool { return runtime.GOMAXPROCS(0) == n }

	// A login may look at the user's tree; once that is over, logged in
	// and sending NOOPs is not work: 1.5 s at one P, longer than the
	// controller's window.
	time.Sleep(1200 * time.Millisecond) // the window and a look after the logins
	waitFor(t, "one P after the logins", func() bool { return procsAre(1) })
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		noops()
		if n := runtime.GOMAXPROCS(0); n != 1 {
			t.Fatalf("two sessions sending NOOPs: GOMAXPROCS %d, want 1", n)
		}
	}

	// Both upload at once: a file each look, until the Ps follow.
	data := bytes.Repeat([]byte("upgate adaptive procs\n"), 5000)
	sum := sha256.Sum256(data)
	stored := 0
	waitFor(t, "two Ps while both sessions upload", func() bool {
		for _, c := range clients {
			if err := c.Stor(fmt.Sprintf("f%d.txt", stored), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
		stored++
		return procsAre(2)
	})
	for _, user := range []string{"alice", "bob"} {
		for i := range stored {
			got, err := os.ReadFile(filepath.Join(root, user, fmt.Sprintf("f%d.txt", i)))
			if err != nil || sha256.Sum256(got) != sum {
				t.Errorf("%s's upload %d: %d bytes, err %v; want %d bytes of sha256 %x", user, i, len(got), err, len(data), sum)
			}
		}
	}
	// NOOPs again: back to one P after the window and the hold (about 3 s).
	waitFor(t, "one P once both sessions only send NOOPs", func() bool { noops(); return procsAre(1) })
}

// TestAdaptiveProcsEnv: GOMAXPROCS in the environment wins over
// cpu.adaptive: the Ps stay where the runtime put them.
func TestAdaptiveProcsEnv(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	if before < 2 {
		t.Skipf("the runtime has %d P: nothing to adapt", before)
	}
	t.Setenv("GOMAXPROCS", "2")
	cfg := gwtest.Config(t, t.TempDir(), nil)
	cfg.CPU.Adaptive = true
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	gwtest.Run(t, cfg)
	// A controller would have set one P at its first step, at start.
	for range 25 {
		if n := runtime.GOMAXPROCS(0); n != before {
			t.Fatalf("GOMAXPROCS %d with the environment variable set, want %d untouched", n, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
