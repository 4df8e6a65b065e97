package admin

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/feed"
)

// ssePing is how often an idle events stream sends a comment, so that
// proxies and the client see it alive.
const ssePing = 15 * time.Second

// eventsHandler serves GET /api/events: the gateway's feed as Server-Sent
// Events, one per feed event ("id: <seq>", "event: <kind>", "data: <the
// feed.Event as JSON>"): agents' commits (gateway.CommitEvent) and hook
// runs (gateway.HookEvent) among them.
//
// Query parameters: user=U keeps U's events only; after=SEQ (or a
// Last-Event-ID header, as a reconnecting EventSource sends) starts after
// that event; follow=0 sends the kept events and ends the response
// instead of streaming new ones until the client leaves.
func eventsHandler(gw *gateway.Gateway, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after := q.Get("after")
		if after == "" {
			after = r.Header.Get("Last-Event-ID")
		}
		var seq uint64
		if after != "" {
			n, err := strconv.ParseUint(after, 10, 64)
			if err != nil {
				http.Error(w, "after: not an event id: "+after, http.StatusBadRequest)
				return
			}
			seq = n
		}
		follow := true
		if f := q.Get("follow"); f != "" {
			b, err := strconv.ParseBool(f)
			if err != nil {
				http.Error(w, "follow: want true or false: "+f, http.StatusBadRequest)
				return
			}
			follow = b
		}
		var keep func(feed.Event) bool
		if user := q.Get("user"); user != "" {
			keep = func(e feed.Event) bool { return e.User == user }
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
		rc := http.NewResponseController(w)
		send := func(e feed.Event) error {
			data, err := json.Marshal(e)
			if err != nil {
				log.Error("events: encode", "kind", e.Kind, "seq", e.Seq, "err", err)
				return nil
			}
			_ = rc.SetWriteDeadline(time.Now().Add(streamWrite)) // a client that stops reading is dropped
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Kind, data); err != nil {
				return err
			}
			return nil
		}
		if !follow {
			for _, e := range gw.Feed().Recent(seq, keep) {
				if send(e) != nil {
					return
				}
			}
			return
		}
		ctx := r.Context()
		recent, live := gw.Feed().Subscribe(ctx, seq, keep)
		for _, e := range recent {
			if send(e) != nil {
				return
			}
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWrite))
		if _, err := fmt.Fprint(w, ": following\n\n"); err != nil || rc.Flush() != nil {
			return
		}
		ping := time.NewTicker(ssePing)
		defer ping.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-live:
				if !ok || send(e) != nil {
					return
				}
			case <-ping.C:
				_ = rc.SetWriteDeadline(time.Now().Add(streamWrite))
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
					return
				}
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
}
