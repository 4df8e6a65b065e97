package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/upgate/upgate/internal/gwtest"
)

// newBrowser starts a headless Chromium for t: a fresh profile, nothing
// that calls Google's hosts, the whole run bounded by timeout. The browser
// is closed and its process waited for in t.Cleanup.
func newBrowser(t *testing.T, execPath string, timeout time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	)
	bound, cancelBound := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(bound, opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(cctx) // closes the browser, waits up to 10 s
		ccancel()
		cancel()
		cancelAlloc() // kills the process if still there, and waits for it
		cancelBound()
	})
	if err := chromedp.Do(ctx); err != nil { // start it now, with ctx itself
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, bounded by 20 s.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// pollPage waits until a JavaScript expression is truthy in the page and
// returns its value; it fails after 15 s.
func pollPage[T any](t *testing.T, ctx context.Context, what, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingInterval(20*time.Millisecond),
		chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return v
}

// rowJS selects the session row of user over proto.
func rowJS(user, proto string) string {
	return fmt.Sprintf(`document.querySelector('#sessions tr[data-user=%q][data-protocol=%q]')`, user, proto)
}

// screenshotPath is where TestOperatorPage saves its screenshot besides
// its artifact directory: $UPGATE_SCREENSHOT, relative to the module root.
func screenshotPath(t *testing.T) string {
	p := os.Getenv("UPGATE_SCREENSHOT")
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, p)
		}
		dir = filepath.Dir(dir)
	}
	t.Fatalf("UPGATE_SCREENSHOT=%s: no go.mod above the test's directory", p)
	return ""
}

// TestOperatorPage drives the operator page in Debian's Chromium: log in
// with the token, watch real FTP and SFTP sessions appear without a
// reload, the bytes of a slow upload grow, saves land in the transfers
// and the latency chart, a hook run show in the events, then kick a
// session from its button and see it go. It saves a screenshot (see
// README: UPGATE_SCREENSHOT=docs/operator-page.png regenerates the
// README's).
func TestOperatorPage(t *testing.T) {
	chromium := gwtest.RequireTool(t, "chromium")
	env := start(t, testToken)
	srv := env.Srv
	ctx := newBrowser(t, chromium, 3*time.Minute)
	base := adminURL(srv, "/")
	var errMu sync.Mutex
	var pageErrors []string // uncaught exceptions, console errors, refused loads (CSP)
	if err := chromedp.Listen(ctx, func(ev any) {
		errMu.Lock()
		defer errMu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			pageErrors = append(pageErrors, "exception: "+ev.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				pageErrors = append(pageErrors, "console.error")
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				pageErrors = append(pageErrors, ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	// Log in once; the cookie is HttpOnly and SameSite=Strict.
	do(t, ctx, "open the page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#token")))
	do(t, ctx, "log in",
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#sessions")))
	pollPage[bool](t, ctx, "the stream", `document.getElementById('live').dataset.state === 'live'`)
	eval[chromedp.Void](t, ctx, `window.upgateNoReload = true`)
	if c := eval[string](t, ctx, `document.cookie`); c != "" {
		t.Errorf("the page's script sees cookies %q: the session cookie must be HttpOnly", c)
	}
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	cookies, err := chromedp.Call(cctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	ccancel()
	if err != nil || len(cookies.Cookies) != 1 {
		t.Fatalf("cookies: %v %v", cookies, err)
	}
	if c := cookies.Cookies[0]; c.Name != "upgate_admin" || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Session {
		t.Errorf("session cookie %+v", c)
	}

	// Real clients appear without a reload.
	aliceFTP := dialFTP(t, srv, "alice")
	bob := dialSFTP(t, srv, "bob")
	dialSFTP(t, srv, "alice") // an IDE's second connection, idle
	pollPage[bool](t, ctx, "alice's FTP session", rowJS("alice", "ftp")+` !== null`)
	pollPage[bool](t, ctx, "bob's SFTP session", rowJS("bob", "sftp")+` !== null`)
	if ka := eval[string](t, ctx, rowJS("bob", "sftp")+`.querySelector('.c-ka').textContent`); !strings.Contains(ka, "30s/10s×3") || !strings.Contains(ka, "ut 1m") {
		t.Errorf("keepalive cell %q", ka)
	}

	// Saves: transfers and latency per user and protocol.
	for _, dir := range []string{"src", "build"} {
		if err := aliceFTP.MakeDir(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := bob.MkdirAll("/app"); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		upload(t, aliceFTP, fmt.Sprintf("src/page%d.php", i), bytes.Repeat([]byte("<?php\n"), 100*(i+1)))
		w, err := bob.Create(fmt.Sprintf("/app/Model%d.php", i))
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Write(bytes.Repeat([]byte("<?php\n"), 300*(i+1)))
		if err = errors.Join(err, w.Close()); err != nil {
			t.Fatalf("SFTP save %d: %v", i, err)
		}
	}
	pollPage[bool](t, ctx, "latency rows for the 8 saves", `[...document.querySelectorAll('#latency tbody tr')].map(r =>
		r.dataset.user + '/' + r.dataset.protocol + ':' + r.cells[2].textContent).join(' ') === 'alice/ftp:4 bob/sftp:4'`)
	if n := eval[int](t, ctx, `document.querySelectorAll('#latency svg.chart circle').length`); n < 4 {
		t.Errorf("latency charts draw %d points", n)
	}
	pollPage[bool](t, ctx, "the transfers", `document.querySelectorAll('#transfers tbody tr[data-result="committed"]').length === 8`)

	// A hook run, as the agent hooks will publish it.
	srv.Gateway.Feed().Publish("hook", "bob", map[string]any{"hook": "php -l", "path": "/app/Model3.php", "exit": 0, "duration": "41ms"})
	if got := pollPage[string](t, ctx, "the hook run", `(document.querySelector('#events tr[data-kind="hook"]') || {}).textContent`); !strings.Contains(got, "bob") ||
		!strings.Contains(got, "hook=php -l") && !strings.Contains(got, `hook="php -l"`) || !strings.Contains(got, "path=/app/Model3.php") {
		t.Errorf("hook row %q", got)
	}

	// Slow uploads: bob's over SFTP, alice's over FTP (a data connection).
	slow, err := bob.Create("/app/vendor.tar")
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xa5}, 256<<10)
	if _, err := slow.Write(chunk); err != nil {
		t.Fatal(err)
	}
	first := pollPage[int64](t, ctx, "bob's upload to show", `(() => { const r = `+rowJS("bob", "sftp")+`;
		return r && r.querySelector('.c-files').textContent.includes('/app/vendor.tar') && Number(r.dataset.bytesIn) >= 256 * 1024 ? Number(r.dataset.bytesIn) : 0; })()`)
	pw, stored := slowStor(t, aliceFTP, "build/bundle.js")
	if _, err := pw.Write(bytes.Repeat([]byte("x"), 700<<10)); err != nil {
		t.Fatal(err)
	}
	pollPage[bool](t, ctx, "alice's data connection", `document.querySelector('#sessions tr.data') !== null && `+
		rowJS("alice", "ftp")+`.querySelector('.c-files').textContent.includes('/build/bundle.js')`)
	for range 6 {
		if _, err := slow.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	grown := pollPage[int64](t, ctx, "bob's bytes to grow", fmt.Sprintf(`(() => { const n = Number(%s.dataset.bytesIn); return n >= %d ? n : 0; })()`,
		rowJS("bob", "sftp"), first+6*(256<<10)))
	t.Logf("bob's session: %d bytes in, then %d", first, grown)
	pollPage[bool](t, ctx, "bob's open file at 1.8 MiB", rowJS("bob", "sftp")+`.querySelector('.c-files').textContent.includes('↑ /app/vendor.tar 1.8 MiB')`)

	// The screenshot, with everything on the page.
	time.Sleep(1100 * time.Millisecond) // age and idle tick past 0s
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	shot, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	scancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(shot)); err != nil || cfg.Width < 1000 || cfg.Height < 600 {
		t.Errorf("screenshot: %+v %v", cfg, err)
	}
	for _, p := range []string{filepath.Join(t.ArtifactDir(), "operator-page.png"), screenshotPath(t)} {
		if p == "" {
			continue
		}
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to %s", p)
	}

	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
	pollPage[bool](t, ctx, "bob's upload committed", `[...document.querySelectorAll('#transfers tbody tr[data-result="committed"]')].some(r => r.textContent.includes('/app/vendor.tar'))`)

	// Group by address: one group, 127.0.0.1, three sessions.
	do(t, ctx, "group by address", chromedp.Click(chromedp.CSS("#group-by-address")))
	if g := pollPage[string](t, ctx, "the address group", `(document.querySelector('#sessions tr.group') || {}).textContent`); !strings.HasPrefix(g, "127.0.0.1 — 3 sessions (alice, bob)") {
		t.Errorf("group row %q", g)
	}
	do(t, ctx, "ungroup", chromedp.Click(chromedp.CSS("#group-by-address")))

	// Kick alice's FTP session in the middle of her upload: its row and
	// its data connection go, the upload is not committed.
	id := eval[string](t, ctx, rowJS("alice", "ftp")+`.dataset.session`)
	kicked := time.Now()
	do(t, ctx, "kick", chromedp.Click(chromedp.CSS(`#sessions tr[data-session="`+id+`"] button.kick`)))
	pollPage[bool](t, ctx, "the kicked session gone", rowJS("alice", "ftp")+` === null && document.querySelector('#sessions tr.data') === null`)
	t.Logf("a kicked session left the page %v after the click", time.Since(kicked).Round(time.Millisecond))
	pw.Close()
	select {
	case err := <-stored:
		if err == nil {
			t.Error("the kicked FTP upload succeeded")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the kicked FTP upload did not end")
	}
	if err := aliceFTP.NoOp(); err == nil {
		t.Error("the kicked FTP client still gets replies")
	}
	pollPage[bool](t, ctx, "the aborted upload", `[...document.querySelectorAll('#transfers tbody tr')].some(r =>
		r.textContent.includes('/build/bundle.js') && r.dataset.result !== 'committed')`)
	if _, err := os.Stat(filepath.Join(env.UserDir("alice"), "build", "bundle.js")); !os.IsNotExist(err) {
		t.Errorf("the kicked upload landed: %v", err)
	}
	if !eval[bool](t, ctx, `window.upgateNoReload === true`) {
		t.Error("the page reloaded")
	}
	errMu.Lock()
	if len(pageErrors) > 0 {
		t.Errorf("the page had errors: %q", pageErrors)
	}
	errMu.Unlock()
	if n := eval[int](t, ctx, `document.querySelectorAll('#sessions tbody tr').length`); n != 2 {
		t.Errorf("%d session rows left, want bob's and alice's SFTP", n)
	}

	// Without the cookie, or with a foreign Host and no cookie: refused.
	bobID := eval[string](t, ctx, rowJS("bob", "sftp")+`.dataset.session`)
	for _, host := range []string{"", "evil.example"} {
		if code, body, _ := request(t, srv, http.MethodGet, "/ui/stream", host, nil, nil); code != http.StatusUnauthorized || strings.Contains(body, "bob") {
			t.Errorf("stream without the cookie, Host %q: %d %q", host, code, body)
		}
		if code, _, _ := request(t, srv, http.MethodPost, "/ui/sessions/"+bobID+"/kick", host, nil, nil); code != http.StatusUnauthorized {
			t.Errorf("kick without the cookie, Host %q: %d", host, code)
		}
	}
	if _, err := bob.Stat("/app/vendor.tar"); err != nil {
		t.Errorf("bob after the refused kicks: %v", err)
	}
}
