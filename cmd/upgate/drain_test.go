package main

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/internal/syncbuf"
)

// freeAddrs returns n loopback addresses whose ports were free, all held
// at once so that they differ: ports taken one after another, each freed
// before the next is asked for, can repeat (TestHooksEndToEnd's gateway
// once got the port its agent was about to bind).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	return addrs
}

// TestSIGTERMDrainsUploads runs `upgate serve` on the embedded default,
// starts an FTP upload, sends SIGTERM halfway through: the upload
// completes (226, the whole file on disk), a new connection is refused,
// and the process exits 0.
func TestSIGTERMDrainsUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddrs(t, 1)[0]
	cmd := exec.Command(bin, "serve", "--listen.ftp", addr, "--listen.sftp", "", "--listen.admin", "")
	cmd.Dir = dir
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	var c *ftp.ServerConn
	for {
		var err error
		if c, err = ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second)); err == nil {
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
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	pr, pw := io.Pipe()
	stored := make(chan error, 1)
	go func() { stored <- c.Stor("drain.bin", pr) }()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once draining.
	deadline = time.Now().Add(10 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("the gateway still accepts connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := pw.Write(data[len(data)/2:]); err != nil {
		t.Fatalf("the upload in flight was cut: %v", err)
	}
	pw.Close()
	select {
	case err := <-stored:
		if err != nil {
			t.Fatalf("STOR during drain: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("STOR did not finish during drain")
	}
	got, err := os.ReadFile(filepath.Join(dir, "data", "demo", "drain.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the drained upload on disk: %d bytes, %v", len(got), err)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit after the drain:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "draining") {
		t.Errorf("no drain in the log:\n%s", stderr.String())
	}
}
