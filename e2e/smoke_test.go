package e2e

import (
	"strings"
	"testing"
)

func TestSmokeHello(t *testing.T) {
	s := start(t, python(t), "basic:app")
	s.ready("/pid")
	code, body := s.get("/environ")
	if code != 200 || !strings.Contains(body, `"REQUEST_METHOD": "GET"`) {
		t.Fatalf("GET /environ = %d %s", code, body)
	}
}
