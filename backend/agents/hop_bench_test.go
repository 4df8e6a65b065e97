package agents_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend"
)

// BenchmarkUploadHop measures what the hop to an agent process costs a
// bulk upload, against the floors under it: this process sends a file
// (sendfile(2), as a client's kernel would) over a fresh loopback
// connection, as an FTP data connection, to
//
//   - direct: a child that writes what it reads to a temp file and renames
//     it into place, through a 1 MiB buffer: a server writing to its own
//     disk, as vsftpd does;
//   - relay-copy: a child that copies the connection to another such child
//     over a second loopback connection, through a 1 MiB buffer: the
//     least any gateway with an agent behind it pays;
//   - relay-splice: the same, with splice(2) in both children (Go's
//     TCPConn.ReadFrom and File.ReadFrom): the least a gateway could pay
//     with a raw data connection to the agent beside its gRPC one;
//   - relay-agent: a child that writes the connection through
//     backend.GRPCFs (the backend file's ReadFrom, as an FTP upload does)
//     to a real agent in another child, and commits it: upgate with an
//     agent process.
//
// It reports the upload's throughput (MB/s, median) and the CPU its
// children spent per GiB (from /proc, user plus system), what decides
// throughput on a machine whose CPUs the client, the gateway and the agent
// share. Compare the rows of one run:
//
//	go test -run '^$' -bench UploadHop -benchtime 8x -count 2 ./backend/agents/
//
// UPGATE_HOP_MIB sets the upload's size (256 MiB).
func BenchmarkUploadHop(b *testing.B) {
	size := int64(256)
	if s := os.Getenv("UPGATE_HOP_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("UPGATE_HOP_MIB=%q: want a positive number of MiB", s)
		}
		size = n
	}
	size <<= 20
	src := filepath.Join(b.TempDir(), "src")
	if err := os.WriteFile(src, make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	sizeEnv := hopBytesEnv + "=" + strconv.FormatInt(size, 10)
	for _, kind := range []string{"direct", "relay-copy", "relay-splice", "relay-agent"} {
		b.Run(kind, func(b *testing.B) {
			var addr string
			var pids []int
			start := func(kind string, env ...string) {
				a, pid := startRoundTripChild(b, kind, append(env, sizeEnv)...)
				addr = a
				pids = append(pids, pid)
			}
			switch kind {
			case "direct":
				start("sink-copy")
			case "relay-copy", "relay-splice":
				mode := strings.TrimPrefix(kind, "relay-")
				start("sink-" + mode)
				start("relay-"+mode, hopToEnv+"="+addr)
			case "relay-agent":
				start("stat") // a real agent
				start("relay-agent", hopToEnv+"="+addr)
			}
			f, err := os.Open(src)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			upload := func() {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					b.Fatal(err)
				}
				if err := sendHop(addr, f); err != nil {
					b.Fatal(err)
				}
			}
			upload() // warm up: connections, page cache, the file in place
			cpu0 := hopCPU(b, pids)
			var took []time.Duration
			for b.Loop() {
				t0 := time.Now()
				upload()
				took = append(took, time.Since(t0))
			}
			cpu := hopCPU(b, pids) - cpu0
			slices.Sort(took)
			b.ReportMetric(float64(size)/took[len(took)/2].Seconds()/1e6, "MB/s")
			b.ReportMetric(cpu.Seconds()/(float64(size)*float64(len(took))/(1<<30)), "cpu-s/GiB")
		})
	}
}

// hopBytesEnv gives a hop child the size of each upload; hopToEnv a relay
// the address it forwards to.
const (
	hopBytesEnv = "UPGATE_HOP_BYTES"
	hopToEnv    = "UPGATE_HOP_TO"
)

// sendHop sends f over a new connection to addr, closes its side and
// waits for the one-byte acknowledgement that the upload landed, within a
// minute (a hung child fails the benchmark instead of holding it).
func sendHop(addr string, f *os.File) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return err
	}
	if _, err := io.Copy(c, f); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return fmt.Errorf("no acknowledgement: %w", err)
	}
	return nil
}

// hopCPU is the user plus system time the processes pids have used, read
// from /proc (fields 14 and 15, in clock ticks of 10 ms).
func hopCPU(b *testing.B, pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The fields after the command's closing parenthesis, from the
		// third (state).
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		for _, f := range fields[11:13] {
			n, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/stat: %v", pid, err)
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// serveHopChild is a hop child's side (see BenchmarkUploadHop): it serves
// kind on lis, one upload per connection, until lis closes; stop releases
// what it holds.
func serveHopChild(kind string, lis net.Listener) (stop func(), err error) {
	size, err := strconv.ParseInt(os.Getenv(hopBytesEnv), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hopBytesEnv, err)
	}
	to := os.Getenv(hopToEnv)
	stop = func() {}
	var serve func(c net.Conn) error
	switch kind {
	case "sink-copy", "sink-splice":
		dir, err := os.MkdirTemp("", "hop")
		if err != nil {
			return nil, err
		}
		stop = func() { os.RemoveAll(dir) }
		serve = func(c net.Conn) error { return sinkHop(c, dir, size, kind == "sink-splice") }
	case "relay-copy", "relay-splice":
		serve = func(c net.Conn) error { return relayHop(c, to, size, kind == "relay-splice") }
	case "relay-agent":
		cc, err := backend.Dial(to, backend.DialOptions{Token: roundTripToken})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		stop = func() { cancel(); cc.Close() }
		fsys := backend.NewGRPCFs(ctx, cc, backend.Options{})
		serve = func(c net.Conn) error {
			f, err := fsys.OpenFile("/up.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := backend.ReadFrom(f, io.LimitReader(c, size)); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			_, err = c.Write([]byte{1})
			return err
		}
	default:
		return nil, fmt.Errorf("unknown round-trip server %q", kind)
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := serve(c); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
				}
			}()
		}
	}()
	return stop, nil
}

// sinkHop writes size bytes of c to a temp file in dir, by splice(2) or
// through a buffer, renames it over dir/up.bin and acknowledges.
func sinkHop(c net.Conn, dir string, size int64, splice bool) error {
	f, err := os.CreateTemp(dir, ".up-")
	if err != nil {
		return err
	}
	src := io.LimitReader(c, size)
	if splice {
		_, err = f.ReadFrom(src)
	} else {
		_, err = io.CopyBuffer(struct{ io.Writer }{f}, src, make([]byte, 1<<20))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, "up.bin"))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	_, err = c.Write([]byte{1})
	return err
}

// relayHop forwards size bytes of c to a sink at to, by splice(2) or
// through a buffer, and passes its acknowledgement back.
func relayHop(c net.Conn, to string, size int64, splice bool) error {
	a, err := net.Dial("tcp", to)
	if err != nil {
		return err
	}
	defer a.Close()
	src := io.LimitReader(c, size)
	if splice {
		_, err = a.(*net.TCPConn).ReadFrom(src)
	} else {
		_, err = io.CopyBuffer(struct{ io.Writer }{a}, src, make([]byte, 1<<20))
	}
	if err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(a, ack[:]); err != nil {
		return err
	}
	_, err = c.Write(ack[:])
	return err
}
