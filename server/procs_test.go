package server_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestAdaptiveProcs: with cpu.adaptive (the default), the process runs one
// Go P while no session or one is busy, one per busy session (up to the
// CPUs) while real FTP clients work at once, falls back once they are
// quiet, and gets the runtime's default back at shutdown. Uploads made
// meanwhile land whole.
func TestAdaptiveProcs(t *testing.T) {
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		t.Skip("GOMAXPROCS is set in the environment: cpu.adaptive does not apply")
	}
	ceiling := runtime.GOMAXPROCS(0)
	if ceiling < 2 {
		t.Skipf("the runtime has %d P: nothing to adapt", ceiling)
	}
	root := t.TempDir()
	cfg := gwtest.Config(t, root, map[string]string{"alice": "pw", "bob": "pw"})
	if !cfg.CPU.Adaptive {
		t.Fatal("cpu.adaptive is off in the loaded default config")
	}
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	t.Cleanup(func() { // runs after gwtest.Run's shutdown
		if n := runtime.GOMAXPROCS(0); n != ceiling {
			t.Errorf("GOMAXPROCS %d after shutdown, want the runtime's default %d back", n, ceiling)
		}
	})
	srv := gwtest.Run(t, cfg)
	waitFor(t, "one P with no session busy", func() bool { return runtime.GOMAXPROCS(0) == 1 })

	login := func(user string) *ftp.ServerConn {
		t.Helper()
		c, err := ftp.Dial(srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, "pw"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice, bob := login("alice"), login("bob")
	// Both work at once: a file each, then NOOPs, until the Ps follow.
	data := bytes.Repeat([]byte("upgate adaptive procs\n"), 5000)
	sum := sha256.Sum256(data)
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; runtime.GOMAXPROCS(0) != 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("two busy sessions: GOMAXPROCS %d after 15 s, want 2", runtime.GOMAXPROCS(0))
		}
		for _, c := range []*ftp.ServerConn{alice, bob} {
			if i == 0 {
				if err := c.Stor("f.txt", bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			} else if err := c.NoOp(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, user := range []string{"alice", "bob"} {
		got, err := os.ReadFile(filepath.Join(root, user, "f.txt"))
		if err != nil || sha256.Sum256(got) != sum {
			t.Errorf("%s's upload: %d bytes, err %v; want %d bytes of sha256 %x", user, len(got), err, len(data), sum)
		}
	}
	// Quiet (logged in, no requests): back to one P after the hold.
	waitFor(t, "one P once both sessions are quiet", func() bool { return runtime.GOMAXPROCS(0) == 1 })
	alice.Quit()
	bob.Quit()
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
