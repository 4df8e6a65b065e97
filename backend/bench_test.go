package backend_test

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// benchSize is the file each iteration writes and reads back.
const benchSize = 256 << 20

// BenchmarkTransfer writes and reads a 256 MiB file in 32 KiB pieces (what
// FTP's io.Copy does) through the gRPC filesystem to a real agent on
// loopback, and through os.File on the same disk as the baseline. Compare
// the MB/s of the grpc and direct sub-benchmarks of one run:
//
//	go test -run '^$' -bench Transfer -benchtime 5x -count 3 ./backend/
//
// UPGATE_BENCH_DIR=/dev/shm takes the disk out of the picture.
func BenchmarkTransfer(b *testing.B) {
	data := fstest.Data(benchSize, 42)
	// UPGATE_BENCH_DIR puts both files on another disk (a tmpfs, say, to
	// see the gateway's own cost without the disk's noise).
	dir := os.Getenv("UPGATE_BENCH_DIR")
	if dir != "" {
		var err error
		if dir, err = os.MkdirTemp(dir, "bench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	} else {
		dir = b.TempDir()
	}
	if err := os.MkdirAll(dir+"/direct", 0o755); err != nil {
		b.Fatal(err)
	}
	a := agenttest.Start(b, dir)
	fss := []struct {
		name string
		fs   afero.Fs
	}{
		{"direct", afero.NewBasePathFs(afero.NewOsFs(), dir+"/direct")},
		{"grpc", a.Fs(b, "")},
	}
	for _, tc := range fss {
		b.Run(tc.name+"/write", func(b *testing.B) {
			b.SetBytes(benchSize)
			for i := 0; i < b.N; i++ {
				// Each iteration writes a new file: the previous one is
				// removed outside the timer, so both paths start from the
				// same free memory.
				b.StopTimer()
				if err := tc.fs.Remove("/f"); err != nil && !errors.Is(err, os.ErrNotExist) {
					b.Fatal(err)
				}
				b.StartTimer()
				f, err := tc.fs.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				for off := 0; off < benchSize; off += 32 << 10 {
					if _, err := f.Write(data[off : off+32<<10]); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
		// In place: the file written above rewritten without truncating
		// it, by 8 goroutines each writing the next 32 KiB with WriteAt,
		// as pkg/sftp's workers write an SFTP client's pipelined WRITEs
		// to a file opened without TRUNC (a resumed upload, sshfs). Each
		// such write is answered only once the agent has applied it.
		b.Run(tc.name+"/write-in-place", func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
				f, err := tc.fs.OpenFile("/f", os.O_WRONLY, 0)
				if err != nil {
					b.Fatal(err)
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for range 8 {
					wg.Go(func() {
						for {
							off := next.Add(32<<10) - 32<<10
							if off >= benchSize {
								return
							}
							if _, err := f.(io.WriterAt).WriteAt(data[off:off+32<<10], off); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/read", func(b *testing.B) {
			b.SetBytes(benchSize)
			buf := make([]byte, 32<<10)
			for b.Loop() {
				f, err := tc.fs.Open("/f")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
				if err != nil || n != benchSize {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				f.Close()
			}
		})
	}
}

// BenchmarkSave is one IDE save as lftp mirror -R does it, through the gRPC
// filesystem and through os.File: a 4 KiB file created (atomically, via the
// agent's temp and rename), its mtime set, its mode set. ns/op is the
// latency of one save on loopback:
//
//	go test -run '^$' -bench Save -benchtime 2000x -count 3 ./backend/
func BenchmarkSave(b *testing.B) {
	data := fstest.Data(4<<10, 7)
	dir := b.TempDir()
	if err := os.MkdirAll(dir+"/direct/src/app", 0o755); err != nil {
		b.Fatal(err)
	}
	a := agenttest.Start(b, dir)
	g := a.Fs(b, "")
	if err := g.MkdirAll("/grpc/src/app", 0o755); err != nil {
		b.Fatal(err)
	}
	mt := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		fs   afero.Fs
	}{
		{"direct", afero.NewBasePathFs(afero.NewOsFs(), dir+"/direct")},
		{"grpc", afero.NewBasePathFs(g, "/grpc")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				fstest.Save(b, tc.fs, "/src/app/saved.php", data, mt)
			}
		})
	}
}

// BenchmarkStat is the smallest operation, a Stat, through the gRPC
// filesystem (one message each way on the session's stream) and through
// os.Stat. ns/op is its latency on loopback:
//
//	go test -run '^$' -bench Stat -count 3 ./backend/
func BenchmarkStat(b *testing.B) {
	dir := b.TempDir()
	if err := os.MkdirAll(dir+"/src/app", 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dir+"/src/app/x.php", []byte("<?php\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	a := agenttest.Start(b, dir)
	for _, tc := range []struct {
		name string
		fs   afero.Fs
	}{
		{"direct", afero.NewBasePathFs(afero.NewOsFs(), dir)},
		{"grpc", a.Fs(b, "")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tc.fs.Stat("/src/app/x.php"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
