// Package proxyproto reads the PROXY protocol header (versions 1 and 2, as
// HAProxy specifies them) that a load balancer sends at the start of a TCP
// connection to tell the server the client's address, and wraps accepted
// connections so that RemoteAddr reports that client.
//
// The header is read lazily, on the connection's first Read or RemoteAddr
// call (net/http makes both from the connection's own goroutine), never in
// Accept, and under a read deadline, so a silent peer cannot stall the
// accept loop.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Mode selects which header versions are looked for, as gunicorn's
// --proxy-protocol.
type Mode int

// The modes. A connection that does not start with a header the mode looks
// for is served as it is.
const (
	Off  Mode = iota // no PROXY protocol
	V1               // the text header only
	V2               // the binary header only
	Auto             // either
)

// ParseMode parses a --proxy-protocol value: off, v1, v2 or auto, and the
// booleans of older gunicorn (true for auto, false for off). An empty
// string is off.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "off", "false", "False":
		return Off, nil
	case "v1":
		return V1, nil
	case "v2":
		return V2, nil
	case "auto", "true", "True":
		return Auto, nil
	}
	return Off, fmt.Errorf("invalid PROXY protocol mode %q: want off, v1, v2 or auto", s)
}

// String returns the mode's --proxy-protocol spelling.
func (m Mode) String() string {
	switch m {
	case V1:
		return "v1"
	case V2:
		return "v2"
	case Auto:
		return "auto"
	}
	return "off"
}

// MaxV1Length is the longest a version 1 header may be, CRLF included.
const MaxV1Length = 107

// v2Signature starts every version 2 header.
var v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// v1Prefix starts every version 1 header.
var v1Prefix = []byte("PROXY ")

// ErrInvalid is wrapped by every error about a malformed header.
var ErrInvalid = errors.New("invalid PROXY protocol header")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Header is a parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Protocol is "TCP4", "TCP6" or "UNKNOWN" (version 1), or, for version
	// 2, "TCP4", "TCP6", "UNIX", "UNSPEC", or "LOCAL" for the LOCAL
	// command (a proxy's own health check: the connection's real
	// endpoints stand).
	Protocol string
	// Source is the client's address and Destination the address it
	// connected to; both invalid when the header carries no IP endpoints
	// (UNKNOWN, LOCAL, UNSPEC, UNIX).
	Source, Destination netip.AddrPort
}

// HasAddrs reports whether the header carries the client's IP address.
func (h *Header) HasAddrs() bool { return h != nil && h.Source.IsValid() }

// Read reads a PROXY header from the start of a connection. If the bytes
// there do not begin a header of a version mode looks for, nothing is
// consumed and Read returns nil, nil: the connection carries no header.
// Read consumes the header and nothing after it; r's buffer must hold at
// least 128 bytes (bufio's default does). Errors that do not wrap
// ErrInvalid come from r: io.EOF, io.ErrUnexpectedEOF, a timeout.
func Read(r *bufio.Reader, mode Mode) (*Header, error) {
	if mode == Off {
		return nil, nil
	}
	// Peek only as far as needed to tell a header from a request: an
	// HTTP request's first byte already differs from both signatures.
	for n := 1; ; n++ {
		b, err := r.Peek(n)
		if err != nil {
			if err == io.EOF && n > 1 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		v1 := (mode == V1 || mode == Auto) && compatible(v1Prefix, b)
		v2 := (mode == V2 || mode == Auto) && compatible(v2Signature, b)
		switch {
		case v1 && n >= len(v1Prefix):
			return readV1(r)
		case v2 && n >= len(v2Signature):
			return readV2(r)
		case !v1 && !v2:
			return nil, nil
		}
		if buffered := r.Buffered(); buffered > n {
			// Decide on what is already here before asking for more.
			n = min(buffered, len(v2Signature)) - 1
		}
	}
}

// compatible reports whether b and sig agree on their common length.
func compatible(sig, b []byte) bool {
	k := min(len(sig), len(b))
	return bytes.Equal(sig[:k], b[:k])
}

// readV1 reads "PROXY <proto> <src> <dst> <sport> <dport>\r\n".
func readV1(r *bufio.Reader) (*Header, error) {
	var line []byte
	for n := len(v1Prefix); ; {
		b, err := r.Peek(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
			break
		}
		if n >= MaxV1Length {
			return nil, invalid("version 1 header longer than %d bytes", MaxV1Length)
		}
		n = min(max(r.Buffered(), n+1), MaxV1Length)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, invalid("version 1 header not ended by CRLF")
	}
	h, err := parseV1(line[len(v1Prefix) : len(line)-2])
	if err != nil {
		return nil, err
	}
	r.Discard(len(line))
	return h, nil
}

// parseV1 parses the fields of a version 1 header, after "PROXY ".
func parseV1(b []byte) (*Header, error) {
	fields := bytes.Split(b, []byte(" "))
	h := &Header{Version: 1, Protocol: string(fields[0])}
	switch h.Protocol {
	case "UNKNOWN":
		// The rest, if any, is to be ignored.
		return h, nil
	case "TCP4", "TCP6":
	default:
		return nil, invalid("version 1 protocol %q", fields[0])
	}
	if len(fields) != 5 {
		return nil, invalid("version 1 header has %d fields, not 6", len(fields)+1)
	}
	src, err := v1Addr(fields[1], h.Protocol)
	if err != nil {
		return nil, err
	}
	dst, err := v1Addr(fields[2], h.Protocol)
	if err != nil {
		return nil, err
	}
	sport, err := v1Port(fields[3])
	if err != nil {
		return nil, err
	}
	dport, err := v1Port(fields[4])
	if err != nil {
		return nil, err
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	return h, nil
}

func v1Addr(b []byte, proto string) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" || (proto == "TCP4") != a.Is4() {
		return netip.Addr{}, invalid("version 1 %s address %q", proto, b)
	}
	return a, nil
}

func v1Port(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, invalid("version 1 port %q", b)
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, invalid("version 1 port %q", b)
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return 0, invalid("version 1 port %q", b)
	}
	return uint16(n), nil
}

// Version 2 commands, address families and transport protocols.
const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	protoUnspec = 0x0
	protoStream = 0x1
)

// readV2 reads a binary header: the signature, version and command,
// family and protocol, a big-endian length, the addresses and any TLVs
// (which are skipped).
func readV2(r *bufio.Reader) (*Header, error) {
	b, err := r.Peek(16)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	verCmd, famProto := b[12], b[13]
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 {
		return nil, invalid("version 2 header with version %d", verCmd>>4)
	}
	cmd, fam, proto := verCmd&0xf, famProto>>4, famProto&0xf
	if cmd != cmdLocal && cmd != cmdProxy {
		return nil, invalid("version 2 command %#x", cmd)
	}
	if cmd == cmdProxy && (fam > famUnix || proto > 0x2) {
		return nil, invalid("version 2 address family and protocol %#02x", famProto)
	}
	h := &Header{Version: 2}
	need := 0
	switch {
	case cmd == cmdLocal:
		h.Protocol = "LOCAL"
	case fam == famUnspec:
		h.Protocol = "UNSPEC"
	case proto != protoStream:
		return nil, invalid("version 2 transport protocol %#x: only STREAM is served", proto)
	case fam == famInet:
		h.Protocol, need = "TCP4", 12
	case fam == famInet6:
		h.Protocol, need = "TCP6", 36
	case fam == famUnix:
		h.Protocol, need = "UNIX", 216
	}
	if length < need {
		return nil, invalid("version 2 %s header with %d address bytes, not %d", h.Protocol, length, need)
	}
	if need > 0 && h.Protocol != "UNIX" {
		a, err := r.Peek(16 + need)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		a = a[16:]
		n := need/2 - 2 // bytes per address
		src, _ := netip.AddrFromSlice(a[:n])
		dst, _ := netip.AddrFromSlice(a[n : 2*n])
		sport := binary.BigEndian.Uint16(a[2*n:])
		dport := binary.BigEndian.Uint16(a[2*n+2:])
		h.Source = netip.AddrPortFrom(src, sport)
		h.Destination = netip.AddrPortFrom(dst, dport)
	}
	// Discard reads through what the buffer cannot hold (TLVs may run to
	// 64 KiB); a short read is a truncated header.
	if _, err := r.Discard(16 + length); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return h, nil
}

// AppendV1 appends h as a version 1 header: "PROXY UNKNOWN\r\n" when it
// carries no IP endpoints.
func (h *Header) AppendV1(b []byte) []byte {
	if !h.HasAddrs() || !h.Destination.IsValid() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	proto := "TCP6"
	if h.Source.Addr().Is4() {
		proto = "TCP4"
	}
	b = append(b, "PROXY "+proto+" "...)
	b = h.Source.Addr().AppendTo(b)
	b = append(b, ' ')
	b = h.Destination.Addr().AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Source.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(h.Destination.Port()), 10)
	return append(b, "\r\n"...)
}

// AppendV2 appends h as a version 2 header followed by the TLV bytes tlvs
// (which must be well-formed TLVs, or nil): the PROXY command with the
// endpoints (both of one family), or the LOCAL command when h.Protocol is "LOCAL" or h carries
// no IP endpoints.
func (h *Header) AppendV2(b []byte, tlvs []byte) []byte {
	b = append(b, v2Signature...)
	var addrs []byte
	switch {
	case h.Protocol == "LOCAL" || !h.HasAddrs() || !h.Destination.IsValid():
		b = append(b, 0x20|cmdLocal, famUnspec<<4|protoUnspec)
	case h.Source.Addr().Is4():
		b = append(b, 0x20|cmdProxy, famInet<<4|protoStream)
		addrs = append(addrs, h.Source.Addr().AsSlice()...)
		addrs = append(addrs, h.Destination.Addr().Unmap().AsSlice()...)
	default:
		b = append(b, 0x20|cmdProxy, famInet6<<4|protoStream)
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		addrs = append(append(addrs, s[:]...), d[:]...)
	}
	if addrs != nil {
		addrs = binary.BigEndian.AppendUint16(addrs, h.Source.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, h.Destination.Port())
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	return append(append(b, addrs...), tlvs...)
}
