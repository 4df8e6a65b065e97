package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/upgate/upgate/gateway"
)

// Client talks to a gateway's admin API.
type Client struct {
	// Addr is the admin listener, host:port or a URL.
	Addr string
	// Token is the bearer token, if the gateway wants one.
	Token string
	// HTTP is the client used; nil means one with a 10 s timeout.
	HTTP *http.Client
}

func (c *Client) url(p string) string {
	base := c.Addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return strings.TrimSuffix(base, "/") + p
}

func (c *Client) do(ctx context.Context, method, p string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(p), nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin: %s %s: %w", method, c.url(p), err)
	}
	return resp, nil
}

func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return fmt.Errorf("admin: %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// Sessions lists the live sessions.
func (c *Client) Sessions(ctx context.Context) ([]gateway.SessionInfo, error) {
	body, err := c.SessionsAndLatency(ctx)
	return body.Sessions, err
}

// SessionsAndLatency returns the whole of GET /api/sessions: the live
// sessions and the save latency summaries.
func (c *Client) SessionsAndLatency(ctx context.Context) (SessionsResponse, error) {
	var body SessionsResponse
	resp, err := c.do(ctx, http.MethodGet, "/api/sessions")
	if err != nil {
		return body, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return body, statusError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return SessionsResponse{}, fmt.Errorf("admin: decode sessions: %w", err)
	}
	return body, nil
}

// Kick closes a session.
func (c *Client) Kick(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/api/sessions/"+url.PathEscape(id))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return statusError(resp)
	}
	return nil
}

// WriteTable prints sessions as a table, one row each, data connections
// under their control session.
func WriteTable(w io.Writer, sessions []gateway.SessionInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROTO\tUSER\tREMOTE\tAGE\tIDLE\tKEEPALIVE\tIN\tOUT\tOP")
	for _, s := range sessions {
		ka := "-"
		if s.Socket != nil {
			ka = fmt.Sprintf("%v/%v/%d ut=%v", s.Socket.KeepaliveIdle, s.Socket.KeepaliveInterval, s.Socket.KeepaliveCount, s.Socket.UserTimeout)
			if !s.Socket.Keepalive {
				ka = "off ut=" + s.Socket.UserTimeout.String()
			}
		}
		id := s.ID
		if s.Parent != "" {
			id = s.Parent + "/" + s.ID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, s.Protocol, dash(s.User), s.Remote,
			roundDur(now.Sub(s.Start)), roundDur(now.Sub(s.LastActivity)), ka, bytesStr(s.BytesIn), bytesStr(s.BytesOut), dash(s.Op))
	}
	return tw.Flush()
}

// WriteCounts prints how many sessions each remote IP ("ip") or user
// ("user") has, most first.
func WriteCounts(w io.Writer, sessions []gateway.SessionInfo, by string) error {
	counts := map[string]int{}
	for _, s := range sessions {
		if s.Parent != "" {
			continue // data connections count with their session
		}
		var k string
		switch by {
		case "ip":
			k = s.Remote
			if host, _, err := net.SplitHostPort(s.Remote); err == nil {
				k = host
			}
		case "user":
			k = dash(s.User)
		default:
			return fmt.Errorf("admin: count by %q: want ip or user", by)
		}
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tSESSIONS\n", strings.ToUpper(by))
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%d\n", k, counts[k])
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func roundDur(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	return d.Round(time.Second).String()
}

func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
