package reliability_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/upgate/upgate/internal/agenttest"
)

// TestSmallUploadMemory: uploading a small file through the gRPC
// filesystem allocates about its size, not a whole 1 MiB write message.
// With 200 uploads in flight, TestLoad's gateway peaked at 467 MiB when
// every upload allocated 1 MiB, and at 231 MiB after.
func TestSmallUploadMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations (sync.Pool drops items)")
	}
	a := agenttest.Start(t, "")
	fsys := a.Fs(t, "")
	data := pattern("small ", 32<<10) // one FTP io.Copy buffer
	upload := func() {
		f, err := fsys.OpenFile("/small.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	upload() // warm up the connection
	const n = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		upload()
	}
	runtime.ReadMemStats(&after)
	perUpload := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d KiB allocated per 32 KiB upload (gateway and agent)", perUpload>>10)
	if perUpload > 512<<10 {
		t.Errorf("%d KiB allocated per 32 KiB upload: more than 512 KiB", perUpload>>10)
	}
}
