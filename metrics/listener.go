package metrics

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpListen is TCP_LISTEN of include/net/tcp_states.h.
const tcpListen = 10

// AcceptQueue returns a Listener.Queue for a listening TCP socket. On
// Linux, TCP_INFO on a socket in the LISTEN state reports the accept
// queue: tcpi_unacked is its current length and tcpi_sacked its limit
// (the backlog given to listen(2), capped by net.core.somaxconn); see
// tcp_get_info in net/ipv4/tcp.c. A unix socket, or a listener already
// closed, reports nothing.
func AcceptQueue(rc syscall.RawConn) func() (length, limit uint32, ok bool) {
	return func() (length, limit uint32, ok bool) {
		var info *unix.TCPInfo
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		}); cerr != nil || err != nil {
			return 0, 0, false
		}
		if info.State != tcpListen {
			return 0, 0, false
		}
		return info.Unacked, info.Sacked, true
	}
}
