package webdav_test

import (
	"crypto/tls"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/afero"
	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a running gateway with the WebDAV frontend and one embedded
// agent (gwtest.Users log in, each to <Root>/<name>).
type env struct {
	*gwtest.Env
	Addr   string       // 127.0.0.1:port
	URL    string       // http://127.0.0.1:port or https://...
	Client *http.Client // keeps connections alive; trusts the test CA
	CA     string       // the test CA's PEM file, "" over plain HTTP
}

// start runs a gateway with WebDAV over plain HTTP on 127.0.0.1:0. edit,
// if non-nil, adjusts the config before it is validated. Everything stops
// in t.Cleanup.
func start(t testing.TB, edit func(*config.Config)) *env {
	t.Helper()
	e := gwtest.Start(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{WebDAV: "127.0.0.1:0"}
		if edit != nil {
			edit(cfg)
		}
	})
	addr := e.Srv.Addr("webdav").String()
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{Env: e, Addr: addr, URL: "http://" + addr, Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// startMem runs a gateway with WebDAV over plain HTTP whose users' trees
// are one in-memory filesystem, returned (gwtest.StartFS): faults injected
// into it are what the disk behind an agent would answer.
func startMem(t testing.TB) (*env, *memfs.FS) {
	t.Helper()
	m := memfs.New(memfs.Options{})
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{WebDAV: "127.0.0.1:0"}
	}, func(string) afero.Fs { return m })
	addr := e.Srv.Addr("webdav").String()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{Env: e, Addr: addr, URL: "http://" + addr, Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, m
}

// startTLS is start with HTTPS (webdav.tls from a test CA).
func startTLS(t testing.TB, edit func(*config.Config)) *env {
	t.Helper()
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "127.0.0.1", testpki.Loopback, false)
	e := start(t, func(cfg *config.Config) {
		cfg.WebDAV.TLS = config.CertKey{Cert: cert, Key: key}
		if edit != nil {
			edit(cfg)
		}
	})
	e.URL = "https://" + e.Addr
	e.CA = pki.Dir + "/ca.pem"
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	e.Client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return e
}

// reply is a response read whole.
type reply struct {
	Status int
	Header http.Header
	Body   string
}

// do sends one request as user (no credentials when user is "") and
// reads the reply. hdr holds header name, value pairs.
func (e *env) do(t testing.TB, user, method, p string, body io.Reader, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, e.URL+p, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, gwtest.Users[user])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the reply: %v", method, p, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// want fails the test unless the reply has status and its body contains
// every one of texts.
func (r reply) want(t testing.TB, what string, status int, texts ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, r.Status, status, r.Body)
	}
	for _, s := range texts {
		if !strings.Contains(r.Body, s) {
			t.Fatalf("%s: body lacks %q:\n%s", what, s, r.Body)
		}
	}
}

// multistatus is a 207 body.
type multistatus struct {
	Responses []struct {
		Href     string `xml:"href"`
		Propstat []struct {
			Prop struct {
				Length       string    `xml:"getcontentlength"`
				LastModified string    `xml:"getlastmodified"`
				ContentType  string    `xml:"getcontenttype"`
				Collection   *struct{} `xml:"resourcetype>collection"`
				Raw          []struct {
					XMLName xml.Name
				} `xml:",any"`
			} `xml:"prop"`
			Status string `xml:"status"`
		} `xml:"propstat"`
	} `xml:"response"`
}

// entry is one resource of a PROPFIND reply.
type entry struct {
	Length, LastModified, ContentType string
	Collection                        bool
}

// propfind lists p at depth and returns its entries by unescaped path.
func (e *env) propfind(t testing.TB, user, p, depth string) map[string]entry {
	t.Helper()
	r := e.do(t, user, "PROPFIND", p, nil, "Depth", depth)
	r.want(t, "PROPFIND "+p, http.StatusMultiStatus)
	var ms multistatus
	if err := xml.Unmarshal([]byte(r.Body), &ms); err != nil {
		t.Fatalf("PROPFIND %s: %v\n%s", p, err, r.Body)
	}
	out := make(map[string]entry)
	for _, resp := range ms.Responses {
		href, err := url.PathUnescape(resp.Href)
		if err != nil {
			t.Fatalf("href %q: %v", resp.Href, err)
		}
		var en entry
		for _, ps := range resp.Propstat {
			if !strings.Contains(ps.Status, " 200 ") {
				continue
			}
			en.Length, en.LastModified, en.ContentType = ps.Prop.Length, ps.Prop.LastModified, ps.Prop.ContentType
			en.Collection = ps.Prop.Collection != nil
		}
		out[href] = en
	}
	return out
}

// count reads a counter.
func count(c prometheus.Counter) int {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return int(m.GetCounter().GetValue())
}

// logins counts the gateway's logins over WebDAV with result ("ok",
// "failed", ...).
func (e *env) logins(result string) int {
	return count(e.Srv.Gateway.Metrics().Logins.WithLabelValues("webdav", result))
}

// transfers counts the gateway's finished transfers of direction
// ("upload", "download") and result ("committed", "completed",
// "aborted", "failed") over WebDAV.
func (e *env) transfers(direction, result string) int {
	return count(e.Srv.Gateway.Metrics().Transfers.WithLabelValues("webdav", direction, result))
}

// raw opens a plain TCP connection to the listener, closed in t.Cleanup.
func (e *env) raw(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
