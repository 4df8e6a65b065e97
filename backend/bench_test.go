package backend_test

import (
	"io"
	"os"
	"testing"

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
//	go test -run '^$' -bench Transfer -benchtime 3x ./backend/
func BenchmarkTransfer(b *testing.B) {
	data := fstest.Data(benchSize, 42)
	a := agenttest.Start(b, "")
	fss := []struct {
		name string
		fs   afero.Fs
	}{
		{"direct", afero.NewBasePathFs(afero.NewOsFs(), b.TempDir())},
		{"grpc", a.Fs(b, "")},
	}
	for _, tc := range fss {
		b.Run(tc.name+"/write", func(b *testing.B) {
			b.SetBytes(benchSize)
			for b.Loop() {
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
