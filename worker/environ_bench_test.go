package worker

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/protocol"
)

// BenchmarkHandlerEnviron measures building a request's environ: a bare
// request as wrk sends it, one with a browser's headers and one with a
// trusted proxy's SCRIPT_NAME, with no --forwarder-headers and with the
// default list.
func BenchmarkHandlerEnviron(b *testing.B) {
	browser := "Host: example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: en\r\n" +
		"Accept-Encoding: gzip\r\nCookie: a=1\r\nReferer: http://example.com/\r\nX-Forwarded-For: 10.0.0.1\r\n"
	requests := []struct{ name, raw string }{
		{"bare", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"},
		{"browser", "GET /app/path?q=1 HTTP/1.1\r\n" + browser + "\r\n"},
		{"proxied", "GET /app/path?q=1 HTTP/1.1\r\n" + browser + "SCRIPT_NAME: /app\r\n\r\n"},
	}
	for _, fwd := range []string{"", "SCRIPT_NAME,PATH_INFO"} {
		for _, req := range requests {
			b.Run(req.name+"/forwarders="+strings.ReplaceAll(fwd, ",", "+"), func(b *testing.B) {
				h := &handler{serverName: "127.0.0.1", serverPort: "8000", trusted: forwarded.MustParseAllowList("127.0.0.1")}
				h.forwarders, _ = forwarded.ParseHeaderNames(fwd)
				h.fwdScriptName = h.forwarders.Has("SCRIPT_NAME")
				r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(req.raw)))
				if err != nil {
					b.Fatal(err)
				}
				r.RemoteAddr = "127.0.0.1:5000"
				names := sortedNames(r.Header, nil)
				var e protocol.Environ
				b.ReportAllocs()
				for b.Loop() {
					e.Reset()
					s := h.requestScriptName(r)
					h.environ(&e, r, request{scriptName: s, pathInfo: strings.TrimPrefix(r.URL.Path, s), scheme: "http", names: names})
				}
			})
		}
	}
}
