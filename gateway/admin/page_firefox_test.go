package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/upgate/upgate/internal/gwtest"
)

// bidiOrigin is the Origin the WebSocket client must send (x/net/websocket
// always sends one); Firefox refuses a BiDi connection with an Origin it
// was not told to allow (--remote-allow-origins).
const bidiOrigin = "http://upgate-test.invalid"

// firefox is a headless Firefox driven over WebDriver BiDi, which Firefox
// has built in: one session, one browsing context (the first tab).
type firefox struct {
	t   *testing.T
	ctx context.Context // bounds the whole run
	ws  *websocket.Conn
	tab string // the browsing context

	mu      sync.Mutex
	next    int
	waiting map[int]chan bidiMessage
	logErrs []string // log.entryAdded entries of level error: exceptions, console.error, CSP refusals
	done    chan struct{}
	readErr error // why the reader ended, once done is closed
}

// bidiMessage is a message from the browser: a command's reply (ID set;
// Type "success" or "error") or an event (Type "event").
type bidiMessage struct {
	ID      *int            `json:"id"`
	Type    string          `json:"type"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// newFirefox starts Firefox headless with a fresh profile and its BiDi
// server on a port it picks, opens a session and finds its tab, the whole
// run bounded by timeout. The browser's process group is killed and waited
// for in t.Cleanup; its profile and home are t.TempDirs.
func newFirefox(t *testing.T, execPath string, timeout time.Duration) *firefox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	profile, home := t.TempDir(), t.TempDir()
	cmd := exec.CommandContext(ctx, execPath, "--headless", "--remote-debugging-port=0", "--remote-allow-origins="+bidiOrigin,
		"-profile", profile, "-no-remote", "about:blank")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+home, "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // content processes too
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	output, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		output.Close()
		t.Fatalf("start firefox: %v", err)
	}
	// Read the output for the BiDi address, then keep draining it (the
	// last 64 KiB are logged if the test fails).
	wsURL := make(chan string, 1)
	drained := make(chan struct{})
	var outMu sync.Mutex
	var out []byte
	go func() {
		defer close(drained)
		r := bufio.NewReader(output)
		for {
			line, err := r.ReadString('\n')
			if _, u, ok := strings.Cut(line, "WebDriver BiDi listening on "); ok {
				select {
				case wsURL <- strings.TrimSpace(u):
				default:
				}
			}
			outMu.Lock()
			out = append(out, line...)
			if len(out) > 64<<10 {
				out = out[len(out)-64<<10:]
			}
			outMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		select {
		case <-drained: // every process holding the pipe is gone
		case <-time.After(10 * time.Second):
			t.Error("firefox's output still open 10 s after its process group was killed")
		}
		output.Close()
		<-drained
		if t.Failed() {
			outMu.Lock()
			t.Logf("firefox's output:\n%s", out)
			outMu.Unlock()
		}
	})

	var u string
	select {
	case u = <-wsURL:
	case <-drained:
		t.Fatal("firefox exited before its BiDi server listened")
	case <-time.After(20 * time.Second):
		t.Fatal("firefox printed no BiDi address in 20 s")
	}
	cfg, err := websocket.NewConfig(u+"/session", bidiOrigin)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	ws, err := cfg.DialContext(dctx)
	dcancel()
	if err != nil {
		t.Fatalf("connect to firefox's BiDi server: %v", err)
	}
	f := &firefox{t: t, ctx: ctx, ws: ws, waiting: map[int]chan bidiMessage{}, done: make(chan struct{})}
	go f.read()
	t.Cleanup(func() {
		ws.Close()
		<-f.done
	})

	f.call("session.new", map[string]any{"capabilities": map[string]any{}}, nil)
	// Uncaught exceptions, console.error and CSP refusals (Firefox
	// reports those as "javascript" errors) arrive as log entries.
	f.call("session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}, nil)
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	f.call("browsingContext.getTree", map[string]any{"maxDepth": 0}, &tree)
	if len(tree.Contexts) == 0 {
		t.Fatal("firefox has no tab")
	}
	f.tab = tree.Contexts[0].Context
	return f
}

// read receives messages until the connection ends: replies go to their
// command, log errors are kept.
func (f *firefox) read() {
	var err error
	defer func() {
		f.readErr = err
		close(f.done)
	}()
	for {
		var raw []byte
		if err = websocket.Message.Receive(f.ws, &raw); err != nil {
			return
		}
		var m bidiMessage
		if err = json.Unmarshal(raw, &m); err != nil {
			err = fmt.Errorf("BiDi message %.200s: %w", raw, err)
			return
		}
		switch {
		case m.Type == "event" && m.Method == "log.entryAdded":
			var e struct {
				Level, Type, Text string
			}
			if json.Unmarshal(m.Params, &e) == nil && e.Level == "error" {
				f.mu.Lock()
				f.logErrs = append(f.logErrs, e.Type+": "+e.Text)
				f.mu.Unlock()
			}
		case m.ID != nil:
			f.mu.Lock()
			ch := f.waiting[*m.ID]
			delete(f.waiting, *m.ID)
			f.mu.Unlock()
			if ch != nil {
				ch <- m // buffered
			}
		}
	}
}

// send sends one command and waits up to 20 s for its reply; the result,
// if out is not nil, is decoded into it.
func (f *firefox) send(method string, params, out any) error {
	ctx, cancel := context.WithTimeout(f.ctx, 20*time.Second)
	defer cancel()
	f.mu.Lock()
	f.next++
	id := f.next
	reply := make(chan bidiMessage, 1)
	f.waiting[id] = reply
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
	}()
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	f.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := websocket.Message.Send(f.ws, string(msg)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-reply:
		if m.Type != "success" {
			return fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				return fmt.Errorf("%s: result %.200s: %w", method, m.Result, err)
			}
		}
		return nil
	case <-f.done:
		return fmt.Errorf("%s: connection closed: %w", method, f.readErr)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// call is send that fails the test on an error.
func (f *firefox) call(method string, params, out any) {
	f.t.Helper()
	if err := f.send(method, params, out); err != nil {
		f.t.Fatal(err)
	}
}

// evaluate evaluates a JavaScript expression in the tab and decodes its
// value, which JSON.stringify must take, into out (nil: not decoded).
// undefined decodes as null.
func (f *firefox) evaluate(expr string, out any) error {
	var res struct {
		Type   string `json:"type"` // "success" or "exception"
		Result struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	err := f.send("script.evaluate", map[string]any{"expression": "JSON.stringify(" + expr + ")",
		"target": map[string]any{"context": f.tab}, "awaitPromise": false, "resultOwnership": "none"}, &res)
	switch {
	case err != nil:
		return err
	case res.Type != "success":
		return fmt.Errorf("evaluate %s: %s", expr, res.ExceptionDetails.Text)
	case out == nil:
		return nil
	}
	s, _ := res.Result.Value.(string)
	if res.Result.Type != "string" {
		s = "null" // undefined
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("evaluate %s: %s: %w", expr, s, err)
	}
	return nil
}

// eval is evaluate that fails the test on an error.
func (f *firefox) eval(expr string, out any) {
	f.t.Helper()
	if err := f.evaluate(expr, out); err != nil {
		f.t.Fatal(err)
	}
}

// poll evaluates expr every 20 ms until it is truthy, and decodes that
// value into out; it fails after 15 s. An error (the page navigating) is
// retried.
func (f *firefox) poll(what, expr string, out any) {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var raw json.RawMessage
	var err error
	for tries := 0; ; tries++ {
		raw = nil
		err = f.evaluate("(() => { const v = "+expr+"; return v ? v : null; })()", &raw)
		if err == nil && len(raw) > 0 && string(raw) != "null" {
			break
		}
		if time.Now().After(deadline) || tries > 750 || f.ctx.Err() != nil {
			f.t.Fatalf("waiting for %s: %s %v", what, raw, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			f.t.Fatalf("%s: %s: %v", what, raw, err)
		}
	}
}

// click clicks the element a CSS selector finds with its click() method
// (the click event a user's click fires, though not a trusted one: the
// page does not ask), or fails if there is none.
func (f *firefox) click(selector string) {
	f.t.Helper()
	var ok bool
	f.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (e) e.click(); return !!e; })()`, selector), &ok)
	if !ok {
		f.t.Fatalf("click: no %s", selector)
	}
}

// pageErrors returns the log errors seen so far.
func (f *firefox) pageErrors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logErrs...)
}

// TestOperatorPageFirefox drives the operator page in Debian's Firefox ESR
// over WebDriver BiDi: log in through the form, see an FTP session appear
// without a reload, its bytes grow during a slow upload, and its row go
// after a click on Kick; no script error, no CSP refusal, no reload.
func TestOperatorPageFirefox(t *testing.T) {
	path := gwtest.RequireTool(t, "firefox")
	env := start(t, testToken)
	srv := env.Srv
	f := newFirefox(t, path, 3*time.Minute)

	// Log in through the form; the cookie is HttpOnly.
	f.call("browsingContext.navigate", map[string]any{"context": f.tab, "url": adminURL(srv, "/"), "wait": "complete"}, nil)
	f.poll("the login form", `document.getElementById('token') !== null`, nil)
	f.call("script.callFunction", map[string]any{
		"functionDeclaration": `(token) => { document.getElementById('token').value = token; document.querySelector('form.login-form').requestSubmit(); }`,
		"arguments":           []any{map[string]any{"type": "string", "value": testToken}},
		"target":              map[string]any{"context": f.tab}, "awaitPromise": false}, nil)
	f.poll("the stream", `document.getElementById('live') && document.getElementById('live').dataset.state === 'live'`, nil)
	f.eval(`window.upgateNoReload = true`, nil)
	var cookies string
	if f.eval(`document.cookie`, &cookies); cookies != "" {
		t.Errorf("the page's script sees cookies %q: the session cookie must be HttpOnly", cookies)
	}

	// An FTP session appears without a reload.
	alice := dialFTP(t, srv, "alice")
	f.poll("alice's FTP session", rowJS("alice", "ftp")+` !== null`, nil)

	// A slow upload: the session's bytes grow while it runs.
	pw, stored := slowStor(t, alice, "bundle.js")
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	if _, err := pw.Write(chunk); err != nil {
		t.Fatal(err)
	}
	var first int64
	f.poll("the upload's first 256 KiB and its data connection", `(() => { const r = `+rowJS("alice", "ftp")+`;
		return r && document.querySelector('#sessions tr.data') !== null && r.querySelector('.c-files').textContent.includes('/bundle.js') &&
			Number(r.dataset.bytesIn) >= 256 * 1024 ? Number(r.dataset.bytesIn) : 0; })()`, &first)
	for range 4 {
		if _, err := pw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	var grown int64
	f.poll("the bytes to grow", fmt.Sprintf(`(() => { const n = Number(%s.dataset.bytesIn); return n >= %d ? n : 0; })()`,
		rowJS("alice", "ftp"), first+4*(256<<10)), &grown)
	t.Logf("alice's session: %d bytes in, then %d", first, grown)

	// Kick it from its button: the row and its data connection go, the
	// upload fails.
	var id string
	f.eval(rowJS("alice", "ftp")+`.dataset.session`, &id)
	kicked := time.Now()
	f.click(`#sessions tr[data-session="` + id + `"] button.kick`)
	f.poll("the kicked session gone", rowJS("alice", "ftp")+` === null && document.querySelector('#sessions tr.data') === null`, nil)
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

	var same bool
	if f.eval(`window.upgateNoReload === true`, &same); !same {
		t.Error("the page reloaded")
	}
	if errs := f.pageErrors(); len(errs) > 0 {
		t.Errorf("the page had errors: %q", errs)
	}
}
