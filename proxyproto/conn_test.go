package proxyproto

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorn-project/gorn/forwarded"
)

// pair returns the two ends of a loopback TCP connection: the accepted one
// (with opts applied by the listener) and the dialled one.
func pair(t *testing.T, opts *Options) (server net.Conn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := NewListener(ln, opts)
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestConn(t *testing.T) {
	local := forwarded.MustParseAllowList("127.0.0.1,::1")
	other := forwarded.MustParseAllowList("10.0.0.0/8")
	const body = "GET / HTTP/1.1\r\n\r\n"
	v1 := "PROXY TCP4 192.0.2.1 198.51.100.7 12345 443\r\n"
	tests := []struct {
		name       string
		opts       *Options
		send       string
		wrapped    bool
		remote     string // "" for the real peer
		read       string // what Read returns; "" when Read fails
		remoteLast bool   // call RemoteAddr after Read, not before
	}{
		{name: "v1 allowed, RemoteAddr first", opts: &Options{Mode: Auto, Allow: local}, send: v1 + body, wrapped: true, remote: "192.0.2.1:12345", read: body},
		{name: "v1 allowed, Read first", opts: &Options{Mode: Auto, Allow: local}, send: v1 + body, wrapped: true, remote: "192.0.2.1:12345", read: body, remoteLast: true},
		{name: "v2 allowed", opts: &Options{Mode: V2, Allow: local}, send: string(v2(0x21, 0x11, inet4Body)) + body, wrapped: true, remote: "192.0.2.1:12345", read: body},
		{name: "v2 LOCAL keeps the peer", opts: &Options{Mode: Auto, Allow: local}, send: string(v2(0x20, 0x00, nil)) + body, wrapped: true, read: body},
		{name: "v1 UNKNOWN keeps the peer", opts: &Options{Mode: Auto, Allow: local}, send: "PROXY UNKNOWN\r\n" + body, wrapped: true, read: body},
		{name: "no header from an allowed peer", opts: &Options{Mode: Auto, Allow: local}, send: body, wrapped: true, read: body},
		{name: "malformed header closes", opts: &Options{Mode: Auto, Allow: local}, send: "PROXY TCP4 nonsense\r\n" + body, wrapped: true},
		{name: "disallowed peer is not parsed", opts: &Options{Mode: Auto, Allow: other}, send: v1 + body, read: v1 + body},
		{name: "nil allow list allows no IP peer", opts: &Options{Mode: Auto}, send: v1 + body, read: v1 + body},
		{name: "off", opts: &Options{Mode: Off, Allow: local}, send: v1 + body, read: v1 + body},
		{name: "nil options", send: v1 + body, read: v1 + body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := pair(t, tt.opts)
			if _, ok := s.(*Conn); ok != tt.wrapped {
				t.Fatalf("wrapped = %v, want %v", ok, tt.wrapped)
			}
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			peer := c.LocalAddr().String()
			wantRemote := tt.remote
			if wantRemote == "" {
				wantRemote = peer
			}
			if !tt.remoteLast {
				if got := s.RemoteAddr().String(); got != wantRemote {
					t.Fatalf("RemoteAddr = %s, want %s", got, wantRemote)
				}
			}
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(s)
			if tt.read == "" {
				var he *HeaderError
				if !errors.As(err, &he) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Read: %q, %v; want a HeaderError wrapping ErrInvalid", got, err)
				}
				// The connection is closed: the client sees EOF.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := c.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset")) {
					t.Fatalf("client read after a malformed header: %d, %v", n, err)
				}
				return
			}
			if err != nil || string(got) != tt.read {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.read)
			}
			if tt.remoteLast {
				if got := s.RemoteAddr().String(); got != wantRemote {
					t.Fatalf("RemoteAddr = %s, want %s", got, wantRemote)
				}
			}
			if got := PeerAddr(s).String(); got != peer {
				t.Fatalf("PeerAddr = %s, want %s", got, peer)
			}
			// HeaderOf finds the header through a wrapper.
			if h := HeaderOf(wrapper{s}); h.HasAddrs() != (tt.remote != "") || h.HasAddrs() && h.Source.String() != tt.remote {
				t.Fatalf("HeaderOf = %+v, want a header from %q", h, tt.remote)
			}
		})
	}
}

// TestConnTimeout: a peer that sends part of a header and stalls is cut
// off at the header timeout, even with no deadline asked for.
func TestConnTimeout(t *testing.T) {
	s, c := pair(t, &Options{Mode: Auto, Allow: forwarded.MustParseAllowList("*"), Timeout: 100 * time.Millisecond})
	io.WriteString(c, "PROXY TCP4 192.0.2.1")
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not time out")
	}
	if got := s.RemoteAddr().String(); got != c.LocalAddr().String() {
		t.Fatalf("RemoteAddr after a failed header = %s, want the real peer", got)
	}
}

// TestConnDeadlines: the deadline the layers above set survives the header
// read, and an earlier one cuts the header read short.
func TestConnDeadlines(t *testing.T) {
	opts := &Options{Mode: Auto, Allow: forwarded.MustParseAllowList("127.0.0.0/8"), Timeout: time.Minute}

	s, c := pair(t, opts)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read with nothing sent succeeded")
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("the earlier deadline asked for was not applied to the header read")
	}

	s, c = pair(t, opts)
	io.WriteString(c, "PROXY UNKNOWN\r\nab")
	s.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	br := bufio.NewReader(s)
	if line, err := br.ReadString('b'); err != nil || line != "ab" {
		t.Fatalf("read %q, %v", line, err)
	}
	// Nothing more comes: the deadline asked for, not the header's
	// (cleared) one or none, ends the wait.
	done := make(chan error, 1)
	go func() { _, err := br.ReadByte(); done <- err }()
	select {
	case err := <-done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline asked for was lost by the header read")
	}
}

func TestPeerAddrUnwrapped(t *testing.T) {
	s, c := pair(t, nil)
	if got := PeerAddr(s); got.String() != c.LocalAddr().String() {
		t.Fatalf("PeerAddr = %v, want %v", got, c.LocalAddr())
	}
	if h := HeaderOf(wrapper{s}); h != nil {
		t.Fatalf("HeaderOf = %+v for a connection without PROXY protocol", h)
	}
}

// wrapper wraps a connection as *tls.Conn does, exposing it with NetConn.
type wrapper struct{ net.Conn }

func (w wrapper) NetConn() net.Conn { return w.Conn }
