package agents

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
)

// BenchmarkEmbedded times the smallest operations of a session on an
// embedded agent, once with its Session streams in process (local.go, what
// the gateway uses) and once over the embedded agent's loopback gRPC
// connection (what it used before, and how a separate agent is reached):
// a Stat, an IDE's save (create, write 4 KiB, commit, chtimes, chmod), and
// a REMOVE or DELE of a file, as one request by kind (RemoveFile) and as
// the Lstat and Remove it was before (LstatRemove; the file is made,
// untimed, before each). Compare the sub-benchmarks of one run:
//
//	go test -run '^$' -bench Embedded -benchtime 3000x -count 3 ./backend/agents/
func BenchmarkEmbedded(b *testing.B) {
	ctx := context.Background()
	pool, _ := embeddedPool(b)
	local, _, err := pool.FS(ctx, "local", "bench", backend.Options{})
	if err != nil {
		b.Fatal(err)
	}
	grpcFs := backend.NewGRPCFs(ctx, pool.embedded["local"].conn, backend.Options{})
	data := fstest.Data(4<<10, 7)
	mt := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		fs   afero.Fs
	}{{"local", local}, {"grpc", grpcFs}} {
		if err := tc.fs.MkdirAll("/"+tc.name, 0o755); err != nil {
			b.Fatal(err)
		}
		name := "/" + tc.name + "/saved.php"
		if err := afero.WriteFile(tc.fs, name, data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run("Stat/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tc.fs.Stat(name); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Save/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				fstest.Save(b, tc.fs, name, data, mt)
			}
		})
		rm := "/" + tc.name + "/removed.php"
		for _, r := range []struct {
			name   string
			remove func() error
		}{
			{"Remove", func() error { return backend.RemoveFile(tc.fs, rm) }},
			{"LstatRemove", func() error {
				if _, err := backend.Lstat(tc.fs, rm); err != nil {
					return err
				}
				return tc.fs.Remove(rm)
			}},
		} {
			b.Run(r.name+"/"+tc.name, func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					if err := afero.WriteFile(tc.fs, rm, data[:1], 0o644); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := r.remove(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run("Read4K/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				f, err := tc.fs.Open(name)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, f); err != nil || n != int64(len(data)) {
					b.Fatal(n, err)
				}
				f.Close()
			}
		})
	}
}
