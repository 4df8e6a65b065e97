package gateway

import (
	"context"
	"log/slog"
	"testing"

	"github.com/upgate/upgate/config"
)

// TestReloadZeroMeansDefault: a reloaded Config's zero counts mean their
// defaults, as they do for New, not "no limit".
func TestReloadZeroMeansDefault(t *testing.T) {
	g, err := New(context.Background(), &config.Config{}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Reload(&config.Config{Connections: config.Connections{Max: 7, MaxPerIP: 3, MaxPerUser: 2, MaxFilesPerUser: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(&config.Config{}); err != nil {
		t.Fatal(err)
	}
	g.registry.mu.Lock()
	got := g.registry.limits
	g.registry.mu.Unlock()
	d := (&config.Config{}).WithDefaults().Connections
	if want := (Limits{Max: d.Max, PerIP: d.MaxPerIP, PerUser: d.MaxPerUser}); got != want || got.PerUser == 2 {
		t.Errorf("limits after reloading the zero Config: %+v, want the defaults %+v", got, want)
	}
	g.files.mu.Lock()
	files := g.files.max
	g.files.mu.Unlock()
	if files != d.MaxFilesPerUser {
		t.Errorf("max_files_per_user after reloading the zero Config: %d, want the default %d", files, d.MaxFilesPerUser)
	}
}
