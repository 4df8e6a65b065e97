package backend_test

import (
	"os"
	"testing"
	"time"

	"github.com/spf13/afero"
	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance runs the suite against the gRPC filesystem with a real
// agent on loopback TCP.
func TestConformance(t *testing.T) {
	a := agenttest.Start(t, "")
	if err := os.Mkdir(a.Dir+"/user", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			root := "user/" + t.Name()[len("TestConformance/"):]
			if err := os.MkdirAll(a.Dir+"/"+root, 0o755); err != nil {
				t.Fatal(err)
			}
			return a.Fs(t, root)
		},
		AfterEach: func(t *testing.T) { a.WaitIdle(t, 10*time.Second) },
		Short:     testing.Short(),
	})
}

// TestConformanceOsFs runs the same suite against afero's OsFs: the
// reference the gRPC filesystem must match.
func TestConformanceOsFs(t *testing.T) {
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			return afero.NewBasePathFs(afero.NewOsFs(), t.TempDir())
		},
		Short:              testing.Short(),
		NoRelativeSymlinks: true,
	})
}
