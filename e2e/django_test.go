package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDjango serves a Django project (testdata/djangosite, no database,
// DEBUG off) the way deployments start gunicorn for one: from another
// directory with --chdir, the project's WSGI module named without
// ":application", threads, and the site mounted under a URL prefix
// (SCRIPT_NAME). It checks what Django takes from the server: the paths
// and the prefix (reverse, redirects), headers and the scheme a trusted
// proxy passes, CSRF with cookies and form bodies, multipart uploads into
// memory and onto disk, a streamed response, FileResponse through
// wsgi.file_wrapper, the 500 of a view that raised with its traceback in
// the error log, and the 400 of a Host not in ALLOWED_HOSTS.
func TestDjango(t *testing.T) {
	py := python(t, "django")
	site, err := filepath.Abs(filepath.Join("testdata", "djangosite"))
	if err != nil {
		t.Fatal(err)
	}
	s := startIn(t, t.TempDir(), py, "--chdir", site, "-w", "2", "--threads", "2", "-e", "SCRIPT_NAME=/app", "mysite.wsgi")
	s.ready("/app/hello/ready/")
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	do := func(req *http.Request) (*http.Response, []byte) {
		t.Helper()
		return doRequest(t, client, req)
	}
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+path, nil)
		return do(req)
	}
	jsonOf := func(b []byte) string {
		t.Helper()
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("decoding %s: %v", b, err)
		}
		out, _ := json.Marshal(v) // sorted keys
		return string(out)
	}

	t.Run("environ", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/app/hello/w%C3%B6rld/?q=1&q=%C3%A9", nil)
		req.Header.Set("X-Custom", "v")
		req.Header.Set("X-Forwarded-Proto", "https") // from 127.0.0.1, trusted by default
		resp, b := do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		delete(m, "pid")
		got, _ := json.Marshal(m)
		want := `{"absolute":"https://` + s.Addr + `/app/hello/w%C3%B6rld/?q=1\u0026q=%C3%A9","custom":"v","host":"` + s.Addr +
			`","name":"wörld","path":"/app/hello/wörld/","path_info":"/hello/wörld/","query":["1","é"],` +
			`"remote_addr":"127.0.0.1","reverse":"/app/hello/x%20y/","script_name":"/app","secure":true}`
		if string(got) != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	})

	t.Run("redirect under the prefix", func(t *testing.T) {
		// CommonMiddleware's APPEND_SLASH builds the URL from the environ.
		resp, b := get("/app/hello/x?q=1")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/app/hello/x/?q=1" {
			t.Errorf("status %d, Location %q: %s", resp.StatusCode, resp.Header.Get("Location"), b)
		}
		if resp, _ := get("/hello/x/"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("a path outside SCRIPT_NAME: status %d, want gorn's 404", resp.StatusCode)
		}
	})

	t.Run("csrf", func(t *testing.T) {
		resp, b := get("/app/form/")
		if resp.StatusCode != 200 {
			t.Fatalf("GET /app/form/: status %d: %s", resp.StatusCode, b)
		}
		var tok struct{ Token string }
		json.Unmarshal(b, &tok)
		u, _ := url.Parse(s.URL + "/app/form/")
		if cs := jar.Cookies(u); tok.Token == "" || len(cs) != 1 || cs[0].Name != "csrftoken" {
			t.Fatalf("no CSRF token (%s) or cookie (%v)", b, cs)
		}
		post := func(form url.Values) (*http.Response, []byte) {
			req, _ := http.NewRequest("POST", s.URL+"/app/form/", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return do(req)
		}
		if resp, b := post(url.Values{"a": {"1"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST without the token: status %d, want 403: %.200s", resp.StatusCode, b)
		}
		resp, b = post(url.Values{"csrfmiddlewaretoken": {tok.Token}, "a": {"1", "2"}, "b": {"ü"}})
		if resp.StatusCode != 200 || jsonOf(b) != `{"fields":{"a":["1","2"],"b":["ü"],"csrfmiddlewaretoken":["`+tok.Token+`"]}}` {
			t.Errorf("POST with the token: status %d: %s", resp.StatusCode, b)
		}
	})

	t.Run("upload", func(t *testing.T) {
		sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
		// Django keeps the files of a request up to
		// FILE_UPLOAD_MAX_MEMORY_SIZE in memory, those of a larger one in
		// temporary files: one request of each.
		for _, tc := range []struct {
			size   int
			onDisk bool
		}{{100 << 10, false}, {3 << 20, true}} {
			data := bytes.Repeat([]byte("0123456789abcdef\x00\xff"), tc.size/18)
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			mw.WriteField("title", "reports")
			fw, _ := mw.CreateFormFile("doc", "doc.bin")
			fw.Write(data)
			mw.Close()
			req, _ := http.NewRequest("POST", s.URL+"/app/upload/", &buf)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			resp, b := do(req)
			if resp.StatusCode != 200 {
				t.Fatalf("%d bytes: status %d: %.300s", len(data), resp.StatusCode, b)
			}
			want, _ := json.Marshal(map[string]any{
				"fields": map[string]any{"title": []string{"reports"}},
				"files":  map[string]any{"doc": map[string]any{"name": "doc.bin", "size": len(data), "sha256": sum(data), "on_disk": tc.onDisk}},
			})
			if got := jsonOf(b); got != jsonOf(want) {
				t.Errorf("%d bytes:\ngot  %s\nwant %s", len(data), got, jsonOf(want))
			}
		}
	})

	t.Run("streamed response", func(t *testing.T) {
		resp, b := get("/app/stream/?n=5")
		if resp.StatusCode != 200 || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("status %d, length %d, transfer encoding %v", resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
		}
		if string(b) != "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n" {
			t.Errorf("body %q", b)
		}
	})

	t.Run("FileResponse", func(t *testing.T) {
		want, err := os.ReadFile(filepath.Join(site, "mysite", "views.py"))
		if err != nil {
			t.Fatal(err)
		}
		resp, b := get("/app/file/")
		if resp.StatusCode != 200 || !bytes.Equal(b, want) || resp.ContentLength != int64(len(want)) ||
			resp.Header.Get("Content-Type") != "text/x-python" {
			t.Errorf("status %d, length %d, type %q, %d bytes (want %d)", resp.StatusCode, resp.ContentLength,
				resp.Header.Get("Content-Type"), len(b), len(want))
		}
	})

	t.Run("a view that raised", func(t *testing.T) {
		resp, b := get("/app/boom/")
		if resp.StatusCode != 500 || !strings.Contains(string(b), "Server Error (500)") || strings.Contains(string(b), "marker-django") {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
		s.waitLog(`Internal Server Error: /app/boom/\nTraceback \(most recent call last\):(.|\n)*RuntimeError: django view exploded: marker-django`, 10*time.Second)
	})

	t.Run("a host not allowed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/app/hello/x/", nil)
		req.Host = "evil.example"
		if resp, b := do(req); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want Django's 400: %.200s", resp.StatusCode, b)
		}
	})
}
