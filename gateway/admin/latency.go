package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/upgate/upgate/gateway"
)

// LatencyResponse is the body of GET /api/latency, and part of GET
// /api/sessions' (SessionsResponse): the save latency (an upload's open to
// its commit) of each user and protocol with a save in the last Window,
// sorted by user, then protocol. Durations are in nanoseconds.
type LatencyResponse struct {
	Window  time.Duration            `json:"window"`
	Slot    time.Duration            `json:"slot"` // between two points of a summary's Series
	Latency []gateway.LatencySummary `json:"latency"`
}

// latency summarizes gw's save latency now.
func latency(gw *gateway.Gateway) LatencyResponse {
	return LatencyResponse{Window: gateway.LatencyWindow, Slot: gateway.LatencySlot, Latency: gw.SaveLatency().Summaries()}
}

func latencyHandler(gw *gateway.Gateway) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(latency(gw))
	}
}

// Latency returns the save latency summaries.
func (c *Client) Latency(ctx context.Context) (LatencyResponse, error) {
	var body LatencyResponse
	resp, err := c.do(ctx, http.MethodGet, "/api/latency")
	if err != nil {
		return body, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return body, statusError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return body, fmt.Errorf("admin: decode latency: %w", err)
	}
	return body, nil
}

// WriteLatency prints save latency summaries as a table, one row per user
// and protocol, under a title naming the window.
func WriteLatency(w io.Writer, l LatencyResponse) error {
	if _, err := fmt.Fprintf(w, "SAVE LATENCY (open to commit, last %v)\n", shortDur(l.Window)); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tPROTO\tSAVES\tP50\tP99\tMAX")
	for _, s := range l.Latency {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.User, s.Protocol, s.Count, latencyStr(s.P50), latencyStr(s.P99), latencyStr(s.Max))
	}
	return tw.Flush()
}

// latencyStr shows a save latency to two or three significant digits.
func latencyStr(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// shortDur drops a Duration's trailing zero units: 5m, not 5m0s.
func shortDur(d time.Duration) string {
	s := d.String()
	for _, z := range []string{"0s", "0m"} {
		if len(s) > len(z) && s[len(s)-len(z):] == z {
			s = s[:len(s)-len(z)]
		}
	}
	return s
}
