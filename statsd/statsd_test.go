package statsd

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// listen is a UDP socket on loopback for a test's datagrams.
func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next reads one datagram, waiting up to 5 s.
func next(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(b[:n])
}

func TestClient(t *testing.T) {
	tests := []struct {
		prefix, tags string
		send         func(c *Client)
		want         string
	}{
		{"", "", func(c *Client) { c.Incr("gunicorn.log.error", 1) }, "gunicorn.log.error:1|c|@1.0"},
		{"shop", "", func(c *Client) { c.Gauge("gunicorn.workers", 4) }, "shop.gunicorn.workers:4|g"},
		{"shop...", "", func(c *Client) { c.Gauge("gunicorn.workers", 0) }, "shop.gunicorn.workers:0|g"},
		{"a.b.", "env:prod,app:shop", func(c *Client) { c.Incr("x", 3) }, "a.b.x:3|c|@1.0|#env:prod,app:shop"},
		{"", "", func(c *Client) { c.Request(404, 1500*time.Microsecond) },
			"gunicorn.request.duration:1.5|ms\ngunicorn.requests:1|c|@1.0\ngunicorn.request.status.404:1|c|@1.0"},
		{"p", "t:1", func(c *Client) { c.Request(200, 2*time.Second) },
			"p.gunicorn.request.duration:2000|ms|#t:1\np.gunicorn.requests:1|c|@1.0|#t:1\np.gunicorn.request.status.200:1|c|@1.0|#t:1"},
	}
	for _, tt := range tests {
		srv := listen(t)
		c, err := Dial(srv.LocalAddr().String(), tt.prefix, tt.tags)
		if err != nil {
			t.Fatal(err)
		}
		tt.send(c)
		if got := next(t, srv); got != tt.want {
			t.Errorf("prefix %q tags %q: sent %q, want %q", tt.prefix, tt.tags, got, tt.want)
		}
		c.Close()
	}
	var none *Client // sends nothing, and does not panic
	none.Incr("x", 1)
	none.Gauge("x", 1)
	none.Request(200, time.Second)
	none.Close()
}

func TestParseHost(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:8125", true}, {"localhost:8125", true}, {"[::1]:8125", true},
		{"localhost", false}, {":8125", false}, {"localhost:0", false}, {"localhost:99999", false}, {"localhost:port", false}, {"", false},
	} {
		if err := ParseHost(tt.host); (err == nil) != tt.ok {
			t.Errorf("ParseHost(%q) = %v, want ok %v", tt.host, err, tt.ok)
		}
	}
}

func TestLogHandler(t *testing.T) {
	srv := listen(t)
	c, err := Dial(srv.LocalAddr().String(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out strings.Builder
	inner := slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})
	if NewLogHandler(inner, nil) != slog.Handler(inner) {
		t.Errorf("without a client the handler is not inner itself")
	}
	log := slog.New(NewLogHandler(inner, c)).With("k", "v").WithGroup("g")
	log.Info("not counted")
	log.Debug("not counted")
	log.Warn("w")
	log.Error("e")
	log.Log(context.Background(), slog.Level(12), "c") // gorn's CRITICAL
	for _, want := range []string{"gunicorn.log.warning:1|c|@1.0", "gunicorn.log.error:1|c|@1.0", "gunicorn.log.critical:1|c|@1.0"} {
		if got := next(t, srv); got != want {
			t.Errorf("sent %q, want %q", got, want)
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 5 || !strings.Contains(out.String(), "k=v") {
		t.Errorf("inner handler got %d lines:\n%s", n, out.String())
	}
}
