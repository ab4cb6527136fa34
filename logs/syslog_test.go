package logs

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseSyslogAddr(t *testing.T) {
	tests := []struct {
		in, network, address string
		ok                   bool
	}{
		{"udp://localhost:514", "udp", "localhost:514", true},
		{"udp://10.0.0.1", "udp", "10.0.0.1:514", true},
		{"udp://", "udp", "localhost:514", true},
		{"tcp://log.example:6514", "tcp", "log.example:6514", true},
		{"udp://[::1]:1514", "udp", "[::1]:1514", true},
		{"udp://[::1]", "udp", "[::1]:514", true},
		{"unix:///dev/log", "unix*", "/dev/log", true},
		{"unix:///dev/log#dgram", "unixgram", "/dev/log", true},
		{"unix:///run/syslog#stream", "unix", "/run/syslog", true},
		{"unix:///dev/log#seqpacket", "", "", false},
		{"unix://", "", "", false},
		{"udp://localhost:syslog", "", "", false},
		{"udp://localhost:0", "", "", false},
		{"localhost:514", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		network, address, err := ParseSyslogAddr(tt.in)
		if (err == nil) != tt.ok || network != tt.network || address != tt.address {
			t.Errorf("ParseSyslogAddr(%q) = %q, %q, %v; want %q, %q (ok %v)", tt.in, network, address, err, tt.network, tt.address, tt.ok)
		}
	}
}

func TestParseSyslogFacility(t *testing.T) {
	for _, tt := range []struct {
		name string
		want int
		ok   bool
	}{{"user", 1, true}, {"LOCAL7", 23, true}, {"daemon", 3, true}, {"auth", 4, true}, {"nope", 0, false}, {"", 0, false}} {
		got, err := ParseSyslogFacility(tt.name)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSyslogFacility(%q) = %d, %v; want %d (ok %v)", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestSyslogTag(t *testing.T) {
	for _, tt := range []struct{ prefix, proc, name, want string }{
		{"", "gorn", "error", "gunicorn.gorn.error"},
		{"", "shop:web", "access", "gunicorn.shop.web.access"},
		{"myapp", "gorn", "error", "gunicorn.myapp.error"},
	} {
		if got := SyslogTag(tt.prefix, tt.proc, tt.name); got != tt.want {
			t.Errorf("SyslogTag(%q, %q, %q) = %q, want %q", tt.prefix, tt.proc, tt.name, got, tt.want)
		}
	}
}

// TestSyslogHandler sends records through the handler to a real UDP
// socket: each is "<PRI>TAG: [PID] message attrs" and a NUL byte, with the
// facility and the level's severity in PRI, and still reaches the inner
// handler.
func TestSyslogHandler(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s, err := DialSyslog("udp://"+srv.LocalAddr().String(), "local0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var inner strings.Builder
	log := slog.New(NewSyslogHandler(NewHandler(&inner, slog.LevelInfo, 42), s, "gunicorn.shop.error", 42)).With("uri", "/a b")
	log.Debug("below the level: neither")
	log.Info("Booting worker with pid: 43")
	log.Warn("careful", "n", 3)
	log.Error("broken")
	log.Log(context.Background(), LevelCritical, "WORKER TIMEOUT (pid:43)")
	for _, want := range []string{
		"<134>gunicorn.shop.error: [42] Booting worker with pid: 43 uri=\"/a b\"\x00",
		"<132>gunicorn.shop.error: [42] careful uri=\"/a b\" n=3\x00",
		"<131>gunicorn.shop.error: [42] broken uri=\"/a b\"\x00",
		"<130>gunicorn.shop.error: [42] WORKER TIMEOUT (pid:43) uri=\"/a b\"\x00",
	} {
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2048)
		n, err := srv.Read(b)
		if err != nil {
			t.Fatalf("no datagram for %q: %v", want, err)
		}
		if got := string(b[:n]); got != want {
			t.Errorf("sent %q, want %q", got, want)
		}
	}
	if n := strings.Count(inner.String(), "\n"); n != 4 {
		t.Errorf("the inner handler got %d lines, want 4:\n%s", n, inner.String())
	}
	if NewSyslogHandler(slog.NewTextHandler(&inner, nil), nil, "x", 1) == nil {
		t.Error("no handler without a Syslog")
	}
	var none *Syslog
	none.Send(slog.LevelError, "x", "y") // sends nothing, does not panic
}
