package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/upgate/upgate/gateway"
)

// webFiles are the page's templates (web/*.html) and the files served
// under /ui/static/ (web/static/).
//
//go:embed web
var webFiles embed.FS

const (
	cookieName     = "upgate_admin"
	cookieLifetime = 24 * time.Hour
	csrfHeader     = "X-Upgate-Csrf"
	maxLoginBody   = 4 << 10
)

// page serves the operator page at / on the admin listener: a template, a
// script and a style sheet, all embedded, and a Server-Sent Events stream
// (/ui/stream, stream.go) that the script renders.
//
// With a token, the page asks for it once (web/login.html) and keeps a
// session cookie signed with a key derived from it: HttpOnly,
// SameSite=Strict, Secure over TLS, valid for cookieLifetime. Without a
// token, it answers only requests to a loopback Host from a loopback
// address, like the API. A kick is a POST that must carry the CSRF token
// the page was rendered with (an HMAC of the session cookie) in the
// X-Upgate-Csrf header, and pass http.CrossOriginProtection.
//
// Its zero value is not usable: use newPage.
type page struct {
	gw    *gateway.Gateway
	log   *slog.Logger
	token string // "" serves loopback only, without login
	key   []byte // signs cookies and CSRF tokens
	cop   *http.CrossOriginProtection
	tmpl  *template.Template
	files http.Handler // web/static
	now   func() time.Time

	streams atomic.Int32 // streams open now, at most maxStreams
}

// pageData is what the templates see.
type pageData struct {
	CSRF   string // for the kick and logout requests
	Token  bool   // the page needs a login (so it has a logout)
	Error  string // the login form's message
	Window string // the save latency window, "5m"
}

func newPage(gw *gateway.Gateway, token string, log *slog.Logger) (*page, error) {
	tmpl, err := template.ParseFS(webFiles, "web/*.html")
	if err != nil {
		return nil, fmt.Errorf("admin: page templates: %w", err)
	}
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		return nil, fmt.Errorf("admin: page files: %w", err)
	}
	p := &page{gw: gw, log: log, token: token, cop: http.NewCrossOriginProtection(), tmpl: tmpl,
		files: http.StripPrefix("/ui/static/", http.FileServerFS(static)), now: time.Now}
	if token != "" {
		// Derived from the token: every replica and restart accepts the
		// cookies of the others, and a new token voids them all.
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte("upgate admin page cookie key"))
		p.key = m.Sum(nil)
	} else {
		p.key = make([]byte, 32)
		if _, err := rand.Read(p.key); err != nil {
			return nil, fmt.Errorf("admin: page key: %w", err)
		}
	}
	return p, nil
}

// register adds the page's routes to mux.
func (p *page) register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", p.loopbackOnly(http.HandlerFunc(p.index)))
	mux.Handle("GET /ui/static/", p.loopbackOnly(http.HandlerFunc(p.static)))
	mux.HandleFunc("POST /ui/login", p.login)
	mux.Handle("POST /ui/logout", p.loggedIn(p.checked(http.HandlerFunc(p.logout))))
	mux.Handle("GET /ui/stream", p.loggedIn(http.HandlerFunc(p.stream)))
	mux.Handle("POST /ui/sessions/{id}/kick", p.loggedIn(p.checked(http.HandlerFunc(p.kick))))
}

// loopbackOnly refuses, when there is no token, a request to a Host that
// is not a loopback name or address (DNS rebinding) or from an address
// that is not loopback.
func (p *page) loopbackOnly(h http.Handler) http.Handler {
	if p.token != "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) || !loopbackRemote(r.RemoteAddr) {
			p.log.Warn("page request refused: not loopback", "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
			http.Error(w, "forbidden: without admin.token_file only loopback Host names and clients are served", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loopbackRemote(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// loggedIn passes on requests with a valid session cookie (or, without a
// token, loopback ones) and refuses the others with 401.
func (p *page) loggedIn(h http.Handler) http.Handler {
	return p.loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.token != "" {
			if _, ok := p.session(r); !ok {
				p.log.Warn("page request refused: not logged in", "path", r.URL.Path, "remote", r.RemoteAddr)
				http.Error(w, "unauthorized: log in at /", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
}

// checked refuses a state-changing request from another origin or without
// the CSRF token of the session (header X-Upgate-Csrf, or form field csrf).
func (p *page) checked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.cop.Check(r); err != nil {
			p.log.Warn("page request refused: cross-origin", "path", r.URL.Path, "remote", r.RemoteAddr,
				"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
			http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
			return
		}
		sid, _ := p.session(r)
		got := r.Header.Get(csrfHeader)
		if got == "" {
			r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
			got = r.PostFormValue("csrf")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf(sid))) != 1 {
			p.log.Warn("page request refused: bad CSRF token", "path", r.URL.Path, "remote", r.RemoteAddr)
			http.Error(w, "forbidden: bad or missing CSRF token (reload the page)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// mac signs parts with the page's key.
func (p *page) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, p.key)
	for _, b := range parts {
		m.Write(b)
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// csrf is the CSRF token of a session cookie value ("" without a token).
func (p *page) csrf(sid string) string {
	return base64.RawURLEncoding.EncodeToString(p.mac([]byte("csrf"), []byte(sid)))
}

// newSession returns a session cookie value: its expiry and a nonce,
// signed.
func (p *page) newSession() (string, error) {
	var payload [24]byte
	binary.BigEndian.PutUint64(payload[:8], uint64(p.now().Add(cookieLifetime).Unix()))
	if _, err := rand.Read(payload[8:]); err != nil {
		return "", fmt.Errorf("admin: session nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(payload[:]) + "." +
		base64.RawURLEncoding.EncodeToString(p.mac([]byte("cookie"), payload[:])), nil
}

// session returns the request's session cookie value if it is valid.
// Without a token every request has the session "".
func (p *page) session(r *http.Request) (string, bool) {
	if p.token == "" {
		return "", true
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", false
	}
	enc, sig, ok := strings.Cut(c.Value, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(enc)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err1 != nil || err2 != nil || len(payload) != 24 || !hmac.Equal(mac, p.mac([]byte("cookie"), payload)) {
		return "", false
	}
	if p.now().Unix() >= int64(binary.BigEndian.Uint64(payload[:8])) {
		return "", false
	}
	return c.Value, true
}

func (p *page) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// render writes a template with the page's security headers.
func (p *page) render(w http.ResponseWriter, name string, status int, data pageData) {
	var buf bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		p.log.Error("page template", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// index serves the page, or the login form to a request without a valid
// session.
func (p *page) index(w http.ResponseWriter, r *http.Request) {
	sid, ok := p.session(r)
	if !ok {
		p.render(w, "login.html", http.StatusOK, pageData{Token: true})
		return
	}
	p.render(w, "page.html", http.StatusOK, pageData{CSRF: p.csrf(sid), Token: p.token != "",
		Window: shortDur(gateway.LatencyWindow)})
}

func (p *page) static(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p.files.ServeHTTP(w, r)
}

// login checks the token from the login form and sets the session cookie.
func (p *page) login(w http.ResponseWriter, r *http.Request) {
	if p.token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := p.cop.Check(r); err != nil {
		p.log.Warn("page login refused: cross-origin", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if subtle.ConstantTimeCompare([]byte(tok), []byte(p.token)) != 1 {
		p.log.Warn("page login refused: bad token", "remote", r.RemoteAddr)
		p.render(w, "login.html", http.StatusUnauthorized, pageData{Token: true, Error: "That is not the admin token."})
		return
	}
	sid, err := p.newSession()
	if err != nil {
		p.log.Error("page login", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p.log.Info("page login", "remote", r.RemoteAddr)
	p.setCookie(w, r, sid, int(cookieLifetime/time.Second))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (p *page) logout(w http.ResponseWriter, r *http.Request) {
	p.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// kick closes a session: 204, or 404 if there is none.
func (p *page) kick(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := p.gw.Registry().Kick(id)
	if errors.Is(err, gateway.ErrNoSession) {
		http.Error(w, "no session "+id, http.StatusNotFound)
		return
	}
	p.log.Info("session kicked from the page", "session", id, "remote", r.RemoteAddr, "close_err", err)
	w.WriteHeader(http.StatusNoContent)
}
