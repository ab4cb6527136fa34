package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestFlask runs a Flask app under four workers: JSON, forms, 404 and an
// exception that becomes a 500 with its traceback in the log.
func TestFlask(t *testing.T) {
	s := start(t, python(t, "flask"), "-w", "4", "flaskapp:app")
	s.ready("/json")
	client := &http.Client{Timeout: 30 * time.Second}

	do := func(req *http.Request) (*http.Response, []byte) {
		t.Helper()
		return doRequest(t, client, req)
	}
	decode := func(b []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("decoding %s: %v", b, err)
		}
		return m
	}

	t.Run("json", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/json?x=1&x=2&y=%C3%A9", nil)
		resp, b := do(req)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /json = %d %v %s", resp.StatusCode, resp.Header, b)
		}
		m := decode(b)
		args, _ := json.Marshal(m["args"])
		if m["hello"] != "world" || string(args) != `{"x":["1","2"],"y":["é"]}` || m["path"] != "/json" {
			t.Errorf("GET /json = %s", b)
		}
	})

	t.Run("json post", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.URL+"/json", strings.NewReader(`{"a": [1, 2, {"b": "ü"}]}`))
		req.Header.Set("Content-Type", "application/json")
		resp, b := do(req)
		if resp.StatusCode != 201 {
			t.Fatalf("POST /json = %d %s", resp.StatusCode, b)
		}
		got, _ := json.Marshal(decode(b)["received"])
		if string(got) != `{"a":[1,2,{"b":"ü"}]}` {
			t.Errorf("received %s", got)
		}
	})

	t.Run("urlencoded form", func(t *testing.T) {
		form := url.Values{"name": {"gorn"}, "tag": {"a", "b"}, "empty": {""}}
		req, _ := http.NewRequest("POST", s.URL+"/form", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, b := do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("POST /form = %d %s", resp.StatusCode, b)
		}
		got, _ := json.Marshal(decode(b)["form"])
		if string(got) != `{"empty":[""],"name":["gorn"],"tag":["a","b"]}` {
			t.Errorf("form %s", got)
		}
	})

	t.Run("multipart form with a file", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("title", "upload")
		fw, _ := mw.CreateFormFile("doc", "report.bin")
		fw.Write(bytes.Repeat([]byte{0, 1, 2, 255}, 100000)) // larger than one runtime read
		mw.Close()
		req, _ := http.NewRequest("POST", s.URL+"/form", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, b := do(req)
		if resp.StatusCode != 200 {
			t.Fatalf("POST /form = %d %s", resp.StatusCode, b)
		}
		m := decode(b)
		form, _ := json.Marshal(m["form"])
		files, _ := json.Marshal(m["files"])
		if string(form) != `{"title":["upload"]}` || string(files) != `{"doc":{"filename":"report.bin","size":400000}}` {
			t.Errorf("form %s files %s", form, files)
		}
	})

	t.Run("404", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/no/such/page", nil)
		resp, b := do(req)
		if resp.StatusCode != 404 || !strings.Contains(string(b), "Not Found") {
			t.Errorf("GET /no/such/page = %d %s", resp.StatusCode, b)
		}
	})

	t.Run("exception", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.URL+"/boom", nil)
		resp, b := do(req)
		if resp.StatusCode != 500 || !strings.Contains(string(b), "Internal Server Error") || strings.Contains(string(b), "marker-flask") {
			t.Errorf("GET /boom = %d %s", resp.StatusCode, b)
		}
		s.waitLog(`Exception on /boom \[GET\]\nTraceback \(most recent call last\):(.|\n)*RuntimeError: flask route exploded: marker-flask`, 10*time.Second)
	})

	t.Run("four workers serve", func(t *testing.T) {
		if n := len(s.workerPids()); n != 4 {
			t.Fatalf("%d workers booted, want 4", n)
		}
		for i := 0; i < 20; i++ {
			req, _ := http.NewRequest("GET", s.URL+"/json", nil)
			if resp, b := do(req); resp.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
			}
		}
	})
}

// doRequest sends req with client and reads the whole response body; any error
// fails the test.
func doRequest(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", req.Method, req.URL, err)
	}
	return resp, b
}
