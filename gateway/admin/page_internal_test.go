package admin

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPageSessionCookie: a session cookie is valid until its expiry, for
// the token that signed it only; altered, it is refused; its CSRF token is
// its own.
func TestPageSessionCookie(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := newPage(nil, "token-one", log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	sid, err := p.newSession()
	if err != nil {
		t.Fatal(err)
	}
	valid := func(p *page, value string) bool {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: value})
		got, ok := p.session(r)
		return ok && got == value
	}
	if !valid(p, sid) {
		t.Fatal("a new session is refused")
	}
	other, _ := p.newSession()
	if other == sid || p.csrf(other) == p.csrf(sid) {
		t.Error("two sessions share a cookie or a CSRF token")
	}
	enc, sig, _ := strings.Cut(sid, ".")
	for _, v := range []string{enc + "." + sig[1:], enc[1:] + "." + sig, enc, sig, enc + "." + enc, strings.ToUpper(sid)} {
		if valid(p, v) {
			t.Errorf("altered cookie %q accepted", v)
		}
	}
	again, _ := newPage(nil, "token-one", log)
	again.now = p.now
	if !valid(again, sid) || again.csrf(sid) != p.csrf(sid) {
		t.Error("a restart (same token) refuses the cookie or changes its CSRF token")
	}
	rotated, _ := newPage(nil, "token-two", log)
	rotated.now = p.now
	if valid(rotated, sid) {
		t.Error("a cookie outlives a new token")
	}
	now = now.Add(cookieLifetime - time.Second)
	if !valid(p, sid) {
		t.Error("refused a second before its expiry")
	}
	now = now.Add(time.Second)
	if valid(p, sid) {
		t.Error("accepted at its expiry")
	}
}

// TestSummarize: another helper's events (hook runs, commits) show as one
// line of their Data's fields.
func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		data any
		want string
	}{
		{map[string]any{"hook": "php -l", "path": "/app/a.php", "exit": 0}, `exit=0 hook="php -l" path=/app/a.php`},
		{struct {
			Path   string `json:"path"`
			Output string `json:"output"`
		}{"/x", "line one\nline two"}, `output="line one\nline two" path=/x`},
		{map[string]any{"nested": map[string]int{"a": 1}, "list": []int{1, 2}}, `list=[1,2] nested={"a":1}`},
		{"just text", `"just text"`},
		{nil, ""},
		{map[string]string{"out": strings.Repeat("é", 300)}, "out=" + strings.Repeat("é", summaryLen-5) + "…"},
		{func() {}, "(json: unsupported type: func())"},
	} {
		if got := summarize(c.data); got != c.want {
			t.Errorf("summarize(%#v) = %q, want %q", c.data, got, c.want)
		}
	}
}
