package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/upgate/upgate/gateway"
)

// Event is a feed event as GET /api/events sends it. Data is left as
// JSON, to decode by Kind: gateway.CommitEvent for "commit",
// gateway.HookEvent for "hook".
type Event struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Kind string          `json:"kind"`
	User string          `json:"user,omitempty"`
	Data json.RawMessage `json:"data"`
}

// EventsOptions select the events Client.Events streams.
type EventsOptions struct {
	// User, if non-empty, keeps that user's events only.
	User string
	// Follow streams new events after the kept ones, until the context
	// ends. False: the kept events only.
	Follow bool
	// After starts after that event's Seq; 0 means with the oldest kept.
	After uint64
}

// eventsTimeout bounds a Client.Events call without Follow whose context
// has no deadline.
const eventsTimeout = 30 * time.Second

// maxEventSize bounds one Server-Sent Event the client reads.
const maxEventSize = 4 << 20

// Events reads GET /api/events and hands each event to fn, oldest first.
// It returns nil when the gateway ends the stream (without Follow, once
// the kept events are sent) or ctx ends, fn's error if it returns one,
// or an error if the stream cannot be read.
func (c *Client) Events(ctx context.Context, opts EventsOptions, fn func(Event) error) error {
	if _, ok := ctx.Deadline(); !ok && !opts.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, eventsTimeout)
		defer cancel()
	}
	q := url.Values{"follow": {strconv.FormatBool(opts.Follow)}}
	if opts.User != "" {
		q.Set("user", opts.User)
	}
	if opts.After > 0 {
		q.Set("after", strconv.FormatUint(opts.After, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/api/events?"+q.Encode()), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{} // the stream lasts: ctx bounds it, not a client timeout
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil && opts.Follow {
			return nil
		}
		return fmt.Errorf("admin: GET %s: %w", req.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	err = readSSE(resp.Body, func(kind string, data []byte) error {
		var e Event
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("admin: decode %s event: %w", kind, err)
		}
		return fn(e)
	})
	if err != nil && ctx.Err() != nil && opts.Follow {
		return nil // the caller stopped following
	}
	return err
}

// readSSE parses a Server-Sent Events stream and calls fn per event with
// its type and data (comments, ids and retry fields are skipped).
func readSSE(r io.Reader, fn func(kind string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxEventSize)
	var kind string
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() > 0 {
				if err := fn(kind, bytes.TrimSuffix(data.Bytes(), []byte("\n"))); err != nil {
					return err
				}
			}
			kind = ""
			data.Reset()
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				kind = value
			case "data":
				data.WriteString(value)
				data.WriteByte('\n')
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin: read events: %w", err)
	}
	return nil
}

// WriteEvent prints one event as a line for people: time, user, kind,
// then what happened. A hook run that is not ok adds its error and the
// end of its output, indented.
func WriteEvent(w io.Writer, e Event) error {
	head := fmt.Sprintf("%s  %-8s  %-6s", e.Time.Local().Format("2006-01-02 15:04:05.000"), dash(e.User), e.Kind)
	switch e.Kind {
	case gateway.KindCommit:
		var c gateway.CommitEvent
		if err := json.Unmarshal(e.Data, &c); err != nil {
			return fmt.Errorf("admin: decode commit event %d: %w", e.Seq, err)
		}
		line := fmt.Sprintf("%s  %-6s  %s", head, c.Op, c.Path)
		if c.From != "" {
			line += " (from " + c.From + ")"
		}
		if c.Op == "write" {
			line += "  " + bytesStr(c.Size)
		}
		_, err := fmt.Fprintf(w, "%s  agent=%s\n", line, c.Agent)
		return err
	case gateway.KindHook:
		var h gateway.HookEvent
		if err := json.Unmarshal(e.Data, &h); err != nil {
			return fmt.Errorf("admin: decode hook event %d: %w", e.Seq, err)
		}
		d := time.Duration(h.DurationSeconds * float64(time.Second)).Round(time.Millisecond)
		if _, err := fmt.Fprintf(w, "%s  %s  %s  exit=%d  %v  %d paths  agent=%s\n", head, h.Hook, h.Result, h.ExitCode, d, h.PathsTotal, h.Agent); err != nil {
			return err
		}
		if h.Result == "ok" {
			return nil
		}
		var b strings.Builder
		if h.Error != "" {
			b.WriteString("    error: " + h.Error + "\n")
		}
		if out := strings.TrimRight(h.Output, "\r\n"); out != "" {
			lines := strings.Split(out, "\n")
			for _, l := range lines[max(0, len(lines)-10):] {
				b.WriteString("    | " + l + "\n")
			}
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	var data bytes.Buffer
	if err := json.Compact(&data, e.Data); err != nil {
		return fmt.Errorf("admin: event %d: %w", e.Seq, err)
	}
	_, err := fmt.Fprintf(w, "%s  %s\n", head, data.String())
	return err
}
