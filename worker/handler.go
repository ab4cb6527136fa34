package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorn-project/gorn/config"
	"github.com/gorn-project/gorn/forwarded"
	"github.com/gorn-project/gorn/httpguard"
	"github.com/gorn-project/gorn/logs"
	"github.com/gorn-project/gorn/metrics"
	"github.com/gorn-project/gorn/protocol"
	"github.com/gorn-project/gorn/proxyproto"
	"github.com/gorn-project/gorn/statsd"
)

// initialBody is the largest request body sent along with the Request
// frame; larger and chunked bodies are pulled by the runtime with Read.
const initialBody = 64 << 10

// smallBody is the largest request body, in bytes, that rides in the
// Request frame wherever the request stands in the pipeline; a larger one
// does only for the requests near its front (slots.nearFront).
const smallBody = 16 << 10

// hopByHop are the response headers (RFC 9110 section 7.6.1) that describe
// the app's connection, not the response, and are dropped. Connection: close
// is honoured by closing the client connection after the response.
var hopByHop = []string{
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"te", "trailers", "trailer", "transfer-encoding", "upgrade",
	"proxy-connection", // not in RFC 9110, but HTTP/2 forbids it (RFC 9113 section 8.2.2)
}

// isHopByHop reports whether name (any case) is in hopByHop.
func isHopByHop(name string) bool {
	for _, h := range hopByHop {
		if len(h) == len(name) && strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// handler turns HTTP requests on one listener into runtime calls.
type handler struct {
	sup         *supervisor
	slots       *slots
	state       *state
	log         *slog.Logger
	access      *accessLog
	stats       *statsd.Client     // --statsd-host; nil sends nothing
	scriptName  string             // SCRIPT_NAME from gorn's environment, without a trailing "/"
	timeout     time.Duration      // --timeout; 0 disables
	bodyTimeout time.Duration      // --body-timeout; 0 disables
	serverName  string             // SERVER_NAME: the listener's host, or a unix socket's path
	serverPort  string             // SERVER_PORT: the listener's port; "" on a unix socket
	frames      sync.Pool          // *[]protocol.Frame
	heads       protocol.HeadCache // the app's response heads, decoded and checked
	bufs        sync.Pool          // *[]byte of initialBody bytes
	states      sync.Pool          // *requestState, with its timer
	frameBufs   sync.Pool          // *[]byte: Request frames being built
	metrics     *metrics.Slot      // this worker's scoreboard slot; nil counts nothing
	// scheme is wsgi.url_scheme unless a trusted peer's secure scheme
	// headers say otherwise: http, or https on TLS ("" means http).
	scheme string
	// trusted are the peers whose secure scheme headers and forwarder
	// headers count (--forwarded-allow-ips); nil trusts no peer.
	trusted *forwarded.AllowList
	// schemeHeaders are the secure scheme headers trusted peers may send
	// (--secure-scheme-headers); nil: none.
	schemeHeaders *forwarded.SchemeHeaders
	// forwarders are the header names with "_" a trusted peer may pass to
	// the app (--forwarder-headers); fwdScriptName says SCRIPT_NAME is one.
	forwarders    *forwarded.HeaderNames
	fwdScriptName bool
	// proxyProtocol says --proxy-protocol is on: the environ may get
	// PROXY_* variables.
	proxyProtocol bool
	// headerMap is --header-map: what becomes of header names with "_".
	headerMap httpguard.HeaderMap
	// bodyLimit is --limit-request-body (0: none); the guard enforces it
	// on HTTP/1, the handler on HTTP/2.
	bodyLimit int64
}

type requestState struct {
	rw          http.ResponseWriter
	r           *http.Request
	rt          *runtimeProc
	c           *call
	headersSent bool
	status      int
	written     int64
	bodyRead    int64 // request body bytes read after the first frame
	unacked     int
	deadlineSet bool   // bodyDeadline set a read deadline: clear it at the end
	deadlineAt  int64  // bodyRead when bodyDeadline last set it
	bodyEOF     bool   // the whole request body has been read
	frame       []byte // the Request frame, when it carries the whole body (for retry)
	retried     bool
	appHead     bool        // the app's response head went out (not gorn's own answer)
	appRaised   bool        // the app raised before its head: gorn answered 500
	appDone     bool        // the runtime's last frame for the request arrived
	slotless    bool        // a body read found no free shared slot (logged once)
	timer       *time.Timer // --timeout's; kept with the state when it is reused
	// env builds the request's environ; kept with the state when it is
	// reused, for its buffer.
	env *protocol.Environ
	// names holds the header's names, sorted, for a request from a server
	// that cannot tell their order; kept with the state when it is reused.
	names []string
	// order is the response header's names in the order the app gave
	// them, for a server that writes them so (headerOrderer); kept with
	// the state when it is reused.
	order []string
}

// runtimeLogged reports whether the runtime logged the request to Python's
// gunicorn.access (or a --logger-class): it does for what its app answered
// and for the 500 of an app that raised before its response began, when
// it logs there at all, unless it died before the response was over. It
// logs right after its last frame for the request, so a runtime that sent
// that frame has logged even if it died since (the next request in its
// pipeline may kill it before this worker finishes this one).
func (st *requestState) runtimeLogged() bool {
	if !(st.appHead || st.appRaised) || st.rt == nil || !st.rt.info.Access {
		return false
	}
	if st.appDone {
		return true
	}
	select {
	case <-st.rt.done:
		return false
	default:
		return true
	}
}

// newState returns a requestState for a request, reused from an earlier
// one when possible.
func (h *handler) newState(rw http.ResponseWriter, r *http.Request) *requestState {
	st, _ := h.states.Get().(*requestState)
	if st == nil {
		st = &requestState{}
	}
	*st = requestState{rw: rw, r: r, timer: st.timer, env: st.env, names: st.names, order: st.order}
	return st
}

// putState gives st back for reuse once its request is over.
func (h *handler) putState(st *requestState) {
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.env != nil {
		st.env.Reset() // lets go of the request's strings
	}
	clear(st.names)
	clear(st.order)
	*st = requestState{timer: st.timer, env: st.env, names: st.names[:0], order: st.order[:0]}
	h.states.Put(st)
}

func (h *handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if status, msg, ok := httpguard.Rejected(r.Header); ok {
		h.reject(rw, r, status, msg)
		return
	}
	if h.headerMap == httpguard.HeaderMapRefuse && !h.refuseUnderscore(rw, r) {
		return
	}
	if r.ProtoMajor == 2 && !h.checkHTTP2(rw, r) {
		return
	}
	// The access log's line wants the wall clock; the duration only the
	// monotonic one, a single clock read.
	var start time.Time
	if h.access != nil {
		start = time.Now()
	}
	began := monoClock()
	st := h.newState(rw, r)
	// A WSGI app may read wsgi.input while its response streams (an echo):
	// without this, net/http's HTTP/1 server fails every body read once the
	// response headers are flushed, and the response is cut short.
	_ = http.NewResponseController(rw).EnableFullDuplex()
	h.metrics.Begin()
	defer func() {
		if st.deadlineSet {
			http.NewResponseController(rw).SetReadDeadline(time.Time{})
		}
		h.state.requestDone()
		reqBytes := r.ContentLength
		if reqBytes < 0 {
			reqBytes = st.bodyRead
		}
		dur := time.Duration(monoClock() - began)
		h.metrics.End(r.Method, st.status, dur, reqBytes, st.written)
		h.stats.Request(st.status, dur)
		if h.access != nil && !st.runtimeLogged() {
			h.logAccess(rw, r, start, dur, st.status, st.written)
		}
		h.putState(st)
	}()
	if h.state.draining.Load() {
		rw.Header().Set("Connection", "close")
	}
	h.serve(st)
	if st.status == 499 && !st.headersSent {
		// The client went away (or half-closed its connection, which
		// reads the same) before its response began: the connection
		// closes without one, as nginx closes it, where both HTTP servers
		// would send an empty 200 for a handler that wrote nothing.
		panic(http.ErrAbortHandler)
	}
	h.discardBody(st)
}

// discardBody reads what is left of a request body the app did not read,
// up to 256 KiB as net/http would, so the connection can serve its next
// request. It must happen here, in the handler: with full duplex enabled
// net/http would otherwise read it after the response, start its
// background read of the connection too late, and fail the next request
// (invalid concurrent Body.Read).
func (h *handler) discardBody(st *requestState) {
	r := st.r
	if st.bodyEOF || r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	if r.Header.Get("Expect") != "" && st.bodyRead == 0 {
		return // no 100 Continue was sent: net/http closes the connection
	}
	if strings.EqualFold(st.rw.Header().Get("Connection"), "close") {
		return
	}
	h.bodyDeadline(st)
	io.CopyN(io.Discard, r.Body, 256<<10+1)
}

func (h *handler) serve(st *requestState) {
	r := st.r
	ctx := r.Context()
	if err := h.slots.acquire(ctx); err != nil {
		st.status = 499
		return
	}
	if sc, ok := ctx.Value(ctxKey{}).(*slotConn); ok {
		sc.begin() // the accept loop may go on: this slot is now taken
	}
	if strings.IndexByte(r.RequestURI, '#') >= 0 {
		dropFragment(r)
	}
	scriptName := h.requestScriptName(r)
	pathInfo, ok := underScriptName(r.URL.Path, scriptName)
	if !ok {
		h.slots.release()
		h.plainError(st, http.StatusNotFound)
		return
	}
	scheme, err := h.urlScheme(r)
	if err != nil { // as gunicorn's InvalidSchemeHeaders
		h.slots.release()
		h.log.Debug("Contradictory scheme headers", "uri", r.RequestURI, "peer", r.RemoteAddr)
		st.rw.Header().Set("Connection", "close")
		h.errorWith(st, http.StatusBadRequest, "Contradictory scheme headers")
		return
	}

	// The first write: environ and, for a small body, the whole body, in
	// one buffer: header, environ length, environ, body. The stream id in
	// the header is filled in once the call exists.
	fb := h.getFrameBuf()
	defer func() {
		if fb != nil {
			h.putFrameBuf(fb)
		}
	}()
	if st.env == nil {
		st.env = new(protocol.Environ)
	}
	env := st.env
	env.Reset()
	names := fieldOrder(st.rw)
	if names == nil {
		st.names = sortedNames(r.Header, st.names[:0])
		names = st.names
	}
	h.environ(env, r, request{scriptName: scriptName, pathInfo: pathInfo, scheme: scheme, names: names})
	env.Add("wsgi.url_scheme", scheme) // the runtime's default gives way to it
	frame := env.AppendTo((*fb)[:protocol.HeaderSize+4])
	envLen := len(frame) - protocol.HeaderSize - 4
	end := r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody
	st.bodyEOF = end
	if !end && r.ContentLength > 0 && (r.ContentLength <= initialBody || r.Header.Get("Expect") == "") &&
		(r.ContentLength <= smallBody || h.slots.nearFront()) {
		// The whole body when it is small; else its first initialBody
		// bytes (the runtime pulls the rest with Read frames), which
		// saves the app's first round trip. Not when the client waits
		// for 100 Continue: reading would send it before the app has
		// seen the request. Nor, if it is over smallBody, for a request
		// deep in the pipeline: the runtime pulls its body when it starts
		// it, so the queue holds heads, not bodies.
		n := int(min(r.ContentLength, initialBody))
		frame = slices.Grow(frame, n)
		h.bodyDeadline(st)
		n, err := io.ReadFull(r.Body, frame[len(frame):len(frame)+n])
		if err != nil {
			*fb = frame
			h.slots.release()
			h.bodyError(st, err)
			return
		}
		frame = frame[:len(frame)+n]
		if int64(n) == r.ContentLength {
			end = true
			st.bodyEOF = true
		}
	}
	*fb = frame
	rt, c, err := h.newCall(ctx)
	if err != nil {
		st.status = 499
		return
	}
	st.rt, st.c = rt, c

	flags := protocol.Flags(0)
	if end {
		flags = protocol.FlagEnd
	}
	protocol.AppendHeader(frame[:0], protocol.Request, flags, c.id, len(frame)-protocol.HeaderSize)
	binary.LittleEndian.PutUint32(frame[protocol.HeaderSize:], uint32(envLen))
	if end {
		st.frame = frame // a request still queued when its runtime dies is sent again
	}
	// A failed write means the runtime is going: pump then sees it gone,
	// after any response it managed to send, and decides (retry or 502).
	rt.sendRequest(c, frame)
	if !end {
		// The send copied or wrote the frame, and no retry needs it: the
		// buffer (up to initialBody of body) goes back now, not after the
		// response, so queued uploads do not each hold one.
		h.putFrameBuf(fb)
		fb = nil
	}
	h.pump(st)
}

// newCall registers a stream on a serving runtime for a request that holds
// a slot; the slot is freed when the stream ends, or now if ctx ends first.
func (h *handler) newCall(ctx context.Context) (*runtimeProc, *call, error) {
	for { // a runtime that died since get returned it gives no call
		rt, err := h.sup.get(ctx)
		if err != nil {
			h.slots.release()
			return nil, nil, err
		}
		if c := rt.newCall(h.slots.releaseFunc); c != nil {
			return rt, c, nil
		}
	}
}

// retry sends a request again to a fresh runtime when the runtime it was
// sent to died before starting it: it was still queued behind others, so
// the app never saw it. Only requests whose whole body went with the
// Request frame qualify. It reports whether the request is in flight again.
func (h *handler) retry(st *requestState) bool {
	if st.frame == nil || st.headersSent || st.c.running.Load() || st.retried {
		return false
	}
	st.retried = true
	ctx := st.r.Context()
	// A failed write can come before the reader has marked the runtime
	// gone: wait for that, or get would hand back the same dying runtime.
	select {
	case <-st.rt.done:
	case <-ctx.Done():
		return false
	case <-time.After(5 * time.Second):
		st.rt.kill() // a write failed yet the runtime lives on: it is broken
		<-st.rt.done
	}
	if err := h.slots.acquire(ctx); err != nil { // the dead runtime's slot was freed
		return false
	}
	rt, c, err := h.newCall(ctx)
	if err != nil {
		return false
	}
	st.rt, st.c = rt, c
	binary.LittleEndian.PutUint32(st.frame[6:], c.id) // the header's stream id
	h.log.Debug("Sending a request queued in a dead runtime to a fresh one", "uri", st.r.RequestURI)
	rt.sendRequest(c, st.frame) // a failure shows in pump, as for the first send
	return true
}

// pump runs the call's events until the response is complete.
func (h *handler) pump(st *requestState) {
	c, rt := st.c, st.rt
	ctx := st.r.Context()
	// The pool holds the slice's holder, not &events: taking a local's
	// address would move it to the heap on every request.
	fp, _ := h.frames.Get().(*[]protocol.Frame)
	if fp == nil {
		fp = new([]protocol.Frame)
	}
	events := (*fp)[:0]
	defer func() {
		*fp = c.recycle(events)
		h.frames.Put(fp)
		c.close()
	}()
	// --timeout bounds the time the request runs in Python: from when the
	// runtime starts it (not while it waits behind others in the runtime's
	// queue), and only while this handler waits on Python (time spent on
	// the client, reading its body or writing to it, does not count).
	var timeout <-chan time.Time
	var timer *time.Timer
	var waited time.Duration
	if h.timeout > 0 {
		if st.timer == nil {
			st.timer = time.NewTimer(h.timeout)
		}
		timer = st.timer
		timer.Stop()
		defer timer.Stop()
	}
	for {
		var t0 time.Time
		timeout = nil
		if timer != nil && c.running.Load() {
			t0 = time.Now()
			timer.Reset(h.timeout - waited)
			timeout = timer.C
		}
		select {
		case <-timeout:
			h.timedOut(st)
			return
		case <-c.notify:
		case <-rt.done:
			// The reader may have delivered the last frames just before
			// it stopped: drain them first.
			events = c.take(c.recycle(events))
			if len(events) > 0 && h.handle(st, events) {
				return
			}
			if len(events) == 0 && h.retry(st) {
				c, rt = st.c, st.rt
				continue
			}
			h.runtimeGone(st)
			return
		case <-ctx.Done():
			h.abandon(st)
			return
		}
		if !t0.IsZero() {
			waited += time.Since(t0)
			timer.Stop()
		}
		events = c.take(c.recycle(events))
		if h.handle(st, events) {
			return
		}
	}
}

// timedOut ends a request that ran in Python longer than --timeout: the
// runtime's stacks go to the error log, the runtime is killed (the
// supervisor starts a fresh one) and the client gets 504, or a cut
// connection if the response had begun.
func (h *handler) timedOut(st *requestState) {
	h.log.Error(fmt.Sprintf("Request timed out after %s in the app; killing its runtime (pid: %d)", h.timeout, st.rt.pid()), "uri", st.r.RequestURI)
	st.rt.killForTimeout()
	h.metrics.Timeout()
	if st.headersSent {
		panic(http.ErrAbortHandler)
	}
	st.rw.Header().Set("Connection", "close")
	h.plainError(st, http.StatusGatewayTimeout)
}

// handle applies frames to the response; true once the call is over.
func (h *handler) handle(st *requestState, events []protocol.Frame) bool {
	for i := 0; i < len(events); i++ {
		f := events[i]
		body := f.Payload
		if f.Type == protocol.Shared {
			// Frames whose bytes continue each other in the shared memory
			// go out in one write; their slots are freed once written.
			body, i = st.c.shared.joined(events, i)
			f = events[i]
		}
		// Body bytes go to the client at once unless more follow in this
		// batch: then they are flushed together. The head always goes at
		// once: net/http picks the framing (chunked or Content-Length)
		// when it first flushes, and the batches must not decide it.
		flush := f.Type == protocol.Start || i == len(events)-1 ||
			(events[i+1].Type != protocol.Data && events[i+1].Type != protocol.Shared)
		switch f.Type {
		case protocol.Start:
			head, body, err := h.heads.ParseStart(f.Payload)
			if err != nil {
				h.log.Error("The app sent an invalid response head; answering 500", "uri", st.r.RequestURI, "err", err)
				h.cancel(st)
				h.plainError(st, http.StatusInternalServerError)
				return true
			}
			if !h.writeHead(st, head) {
				h.cancel(st)
				h.plainError(st, http.StatusInternalServerError)
				return true
			}
			st.appDone = f.End()
			if !h.writeBody(st, body, f.End(), flush) {
				return true
			}
			if f.End() {
				return true
			}
		case protocol.Data, protocol.Shared:
			if !st.headersSent {
				h.log.Error("The app runtime sent data before the response head", "uri", st.r.RequestURI)
				h.cancel(st)
				h.plainError(st, http.StatusBadGateway)
				return true
			}
			st.appDone = f.End()
			if !h.writeBody(st, body, f.End(), flush) {
				return true
			}
			if f.End() {
				return true
			}
		case protocol.Read:
			n, err := protocol.Uint32Payload(f.Payload)
			if err != nil {
				h.log.Error("The app runtime sent a bad read request", "err", err)
				n = initialBody
			}
			if !h.sendBody(st, int(min(max(n, 1), initialBody))) {
				return true
			}
		case protocol.Error:
			st.appDone = true
			h.metrics.Exception()
			// gunicorn counts its "Error handling request" traceback.
			h.stats.Incr("gunicorn.log.exception", 1)
			if !st.headersSent {
				h.plainError(st, http.StatusInternalServerError)
				st.appRaised = true
				return true
			}
			// Headers are out: the only honest signal left is to cut
			// the connection, so the client sees an incomplete response.
			panic(http.ErrAbortHandler)
		}
	}
	return false
}

// reasonWriter is a ResponseWriter that can send a status line's reason
// phrase of the app's choosing (http1's; net/http's cannot).
type reasonWriter interface {
	WriteHeaderReason(code int, reason string)
}

// serverReadHeaders are the response header fields the HTTP servers
// (http1's and net/http's) read themselves, by their canonical names.
var serverReadHeaders = [...]string{"Content-Type", "Content-Length", "Content-Encoding", "Date"}

// responseHeaderKey is the response header map's key for a header name
// of the app's: the name as the app spelled it, so that it goes out so
// (ETag, WWW-Authenticate, as gunicorn sends them, not Etag and
// Www-Authenticate), but the canonical name of the fields the servers
// read, which they look up so; server says it is one of those, which every
// spelling reaches by that one key. Hop-by-hop fields never get here.
func responseHeaderKey(name string) (key string, server bool) {
	for _, k := range serverReadHeaders {
		if len(k) == len(name) && strings.EqualFold(k, name) {
			return k, true
		}
	}
	return name, false
}

// otherSpelling finds the key of hdr that is name in another case.
func otherSpelling(hdr http.Header, name string) (string, bool) {
	for k := range hdr {
		if len(k) == len(name) && strings.EqualFold(k, name) {
			return k, true
		}
	}
	return "", false
}

// writeHead sets the response status and headers; false if they are not
// valid to send.
func (h *handler) writeHead(st *requestState, head protocol.ResponseHead) bool {
	if head.Code < 200 {
		h.log.Error("The app returned an informational status as its response; answering 500", "uri", st.r.RequestURI, "status", head.Status)
		return false
	}
	hdr := st.rw.Header()
	order := st.order[:0]
	if h.state.draining.Load() {
		// The worker began to drain while the app ran: this response is
		// the connection's last, as those of requests that start later.
		hdr.Set("Connection", "close")
	}
	// Each header's values are a one-element window on the head's own
	// pair (full slice expression: a second value for the same name is
	// appended elsewhere), so the values take no memory of their own. The
	// head may be shared (HeadCache): nothing writes into these windows.
	for i := range head.Headers {
		kv := &head.Headers[i]
		name := kv[0]
		if isHopByHop(name) {
			if strings.EqualFold(name, "connection") && strings.EqualFold(strings.TrimSpace(kv[1]), "close") {
				hdr.Set("Connection", "close")
			}
			continue
		}
		key, server := responseHeaderKey(name)
		if old, ok := hdr[key]; ok {
			hdr[key] = append(old, kv[1])
			continue
		}
		// set-cookie after Set-Cookie: one field, in order. The fields the
		// servers read have one key whatever the spelling: no scan.
		if !server {
			if k, ok := otherSpelling(hdr, key); ok {
				hdr[k] = append(hdr[k], kv[1])
				continue
			}
		}
		hdr[key] = kv[1:2:2]
		order = append(order, key)
	}
	st.order = order
	if o, ok := st.rw.(headerOrderer); ok {
		o.SetHeaderOrder(order) // as gunicorn writes them: in the app's order
	}
	if _, ok := hdr["Content-Type"]; !ok {
		// As gunicorn, no Content-Type when the app sends none: the key
		// with no value stops the server from sniffing one.
		hdr["Content-Type"] = nil
	}
	if cls := hdr["Content-Length"]; len(cls) > 0 && cls[0] != "" { // hdr.Get, the key being canonical
		// ParseUint, unlike ParseInt, refuses a sign: "+5" is not a valid
		// Content-Length (RFC 9110: 1*DIGIT) and would be sent as is.
		cl := cls[0]
		same := true // the same length twice is one (RFC 9110 section 8.6), as gunicorn passes it
		for _, v := range cls[1:] {
			same = same && v == cl
		}
		if same {
			hdr["Content-Length"] = cls[:1]
		}
		if _, err := strconv.ParseUint(cl, 10, 63); err != nil || !same {
			h.log.Error("The app sent an invalid Content-Length; answering 500", "uri", st.r.RequestURI, "content_length", cl)
			for k := range hdr {
				delete(hdr, k)
			}
			return false
		}
	}
	// The app's reason phrase, where the writer can send one (http1's).
	if rw, ok := st.rw.(reasonWriter); ok && len(head.Status) > 4 && head.Status[4:] != http.StatusText(head.Code) {
		rw.WriteHeaderReason(head.Code, head.Status[4:])
	} else {
		st.rw.WriteHeader(head.Code)
	}
	st.status = head.Code
	st.headersSent = true
	st.appHead = true
	return true
}

// writeBody writes response bytes to the client, flushing if asked
// (unless the response is complete: then net/http does), and returns
// response credit to the runtime. False if the client is gone.
func (h *handler) writeBody(st *requestState, b []byte, end, flush bool) bool {
	if len(b) > 0 {
		n, err := st.rw.Write(b)
		st.written += int64(n)
		if err != nil && !errors.Is(err, http.ErrBodyNotAllowed) {
			h.abandon(st)
			return false
		}
		st.unacked += len(b)
	}
	if end {
		return true
	}
	if flush {
		if err := http.NewResponseController(st.rw).Flush(); err != nil {
			h.abandon(st)
			return false
		}
	}
	if st.unacked >= protocol.InitialWindow/4 {
		if !h.sendFrame(st, protocol.AppendUint32Frame(nil, protocol.Window, st.c.id, uint32(st.unacked))) {
			return false
		}
		st.unacked = 0
	}
	return true
}

// sendBody answers a Read: up to n bytes of the request body, read into a
// shared body slot when one is free, else into a buffer sent whole.
func (h *handler) sendBody(st *requestState, n int) bool {
	if sh := st.c.shared; sh != nil {
		if slot, mem, ok := sh.takeBodySlot(); ok {
			return h.sendSharedBody(st, sh, slot, mem[:min(n, len(mem))])
		}
		if !st.slotless {
			st.slotless = true
			h.log.Debug("No free shared body slot; sending the request body through the pipe", "uri", st.r.RequestURI)
		}
	}
	bufp := h.getBuf()
	defer h.putBuf(bufp)
	buf := (*bufp)[:protocol.HeaderSize+n]
	m, flags, ok := h.readBody(st, buf[protocol.HeaderSize:])
	if !ok {
		return false
	}
	return h.sendFrame(st, protocol.AppendHeader(buf[:0], protocol.Body, flags, st.c.id, m)[:protocol.HeaderSize+m])
}

// sendSharedBody answers a Read with body bytes read into slot (its
// memory is buf) and a SharedBody frame naming them. The slot is freed
// here unless the frame went out; then the runtime's next Read or the end
// of the stream frees it.
func (h *handler) sendSharedBody(st *requestState, sh *sharedBodies, slot uint32, buf []byte) bool {
	m, flags, ok := h.readBody(st, buf)
	if !ok || m == 0 {
		sh.releaseBodySlot(slot)
		// The end, with no bytes: nothing to share.
		return ok && h.sendFrame(st, protocol.AppendHeader(nil, protocol.Body, flags, st.c.id, 0))
	}
	st.c.bodySlot.Store(slot + 1)
	var b [protocol.HeaderSize + 8]byte
	return h.sendFrame(st, protocol.AppendSharedFrame(b[:0], protocol.SharedBody, flags, st.c.id, slot, uint32(m)))
}

// readBody reads the next request body bytes into buf, waiting up to
// --body-timeout for at least one; flags has FlagEnd with the last. ok is
// false after a failed read, which bodyError has answered.
func (h *handler) readBody(st *requestState, buf []byte) (m int, flags protocol.Flags, ok bool) {
	var err error
	for m == 0 && err == nil {
		h.bodyDeadline(st)
		m, err = st.r.Body.Read(buf)
		st.bodyRead += int64(m)
	}
	if err == io.EOF {
		st.bodyEOF = true
		return m, protocol.FlagEnd, true
	}
	if err != nil {
		h.bodyError(st, err)
		return 0, 0, false
	}
	return m, 0, true
}

// sendFrame sends a frame to the request's runtime; false, with the
// client answered, if the runtime is gone.
func (h *handler) sendFrame(st *requestState, frame []byte) bool {
	if err := st.rt.send(frame); err != nil {
		h.runtimeGone(st)
		return false
	}
	return true
}

// bodyError handles a failed read of the request body: a client that went
// away is let go; a malformed body (bad chunked encoding, short body) gets
// 400.
func (h *handler) bodyError(st *requestState, err error) {
	if st.c != nil {
		h.cancel(st)
	}
	st.rw.Header().Set("Connection", "close")
	var ge *httpguard.BodyError
	if errors.As(err, &ge) {
		// Checked first: a failed read also cancels the request context.
		h.log.Debug("Invalid request body", "uri", st.r.RequestURI, "err", err)
		h.plainError(st, ge.Status)
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Checked first: a failed read also cancels the request context.
		h.log.Debug("Request body timed out (--body-timeout)", "uri", st.r.RequestURI)
		h.plainError(st, http.StatusRequestTimeout)
		return
	}
	if st.r.Context().Err() != nil || errors.Is(err, net.ErrClosed) {
		st.status = 499
		return
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		h.plainError(st, http.StatusRequestEntityTooLarge)
		return
	}
	h.log.Debug("Invalid request body", "uri", st.r.RequestURI, "err", err)
	h.plainError(st, http.StatusBadRequest)
}

// minBodyProgress is how much of its body a client must send per
// --body-timeout: the deadline of a wait for body bytes moves on only once
// this much more has come since it was set. A client that trickles its
// body (a byte every few seconds) would otherwise hold the app's thread
// for ever, each byte well within --body-timeout. 16 KiB per 30 s is
// about 550 bytes a second, the minimum rate Apache's mod_reqtimeout
// asks by default.
const minBodyProgress = 16 << 10

// bodyDeadline bounds the next read of the request body by --body-timeout,
// so a client that stops sending mid-body cannot hold a slot forever; the
// bound is set again only once minBodyProgress more bytes have come.
func (h *handler) bodyDeadline(st *requestState) {
	if h.bodyTimeout > 0 && (!st.deadlineSet || st.bodyRead-st.deadlineAt >= minBodyProgress) {
		http.NewResponseController(st.rw).SetReadDeadline(time.Now().Add(h.bodyTimeout))
		st.deadlineSet = true
		st.deadlineAt = st.bodyRead
	}
}

// cancel tells the runtime to stop the app's response; the stream's slot
// is freed when the runtime ends it.
func (h *handler) cancel(st *requestState) {
	st.rt.send(protocol.AppendFrame(nil, protocol.Cancel, 0, st.c.id, nil))
}

// abandon gives up on a client that went away.
func (h *handler) abandon(st *requestState) {
	h.cancel(st)
	if st.status == 0 {
		st.status = 499
	}
	if st.headersSent {
		panic(http.ErrAbortHandler)
	}
}

// runtimeGone answers a request whose runtime died: 502 when nothing was
// sent yet, else the connection is cut.
func (h *handler) runtimeGone(st *requestState) {
	if st.headersSent {
		panic(http.ErrAbortHandler)
	}
	h.plainError(st, http.StatusBadGateway)
}

// plainError sends a short error page, as gunicorn does.
func (h *handler) plainError(st *requestState, code int) { h.errorWith(st, code, "") }

// errorWith is plainError with msg on the page, as gunicorn words it.
func (h *handler) errorWith(st *requestState, code int, msg string) {
	if st.headersSent {
		panic(http.ErrAbortHandler)
	}
	hdr := st.rw.Header()
	for k := range hdr {
		if k != "Connection" {
			delete(hdr, k)
		}
	}
	n := errorPage(st.rw, code, msg)
	st.status = code
	st.written = int64(n)
	st.headersSent = true
}

// errorPage writes gunicorn's short error page for code, with msg (escaped)
// under the title when not empty, and returns the body bytes written.
func errorPage(rw http.ResponseWriter, code int, msg string) int {
	text := http.StatusText(code)
	body := "<html>\n  <head>\n    <title>" + text + "</title>\n  </head>\n  <body>\n    <h1><p>" + text + "</p></h1>\n"
	if msg != "" {
		body += "    " + html.EscapeString(msg) + "\n"
	}
	body += "  </body>\n</html>\n"
	hdr := rw.Header()
	hdr.Set("Content-Type", "text/html")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(code)
	n, _ := io.WriteString(rw, body)
	return n
}

func (h *handler) getBuf() *[]byte {
	if b, ok := h.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, protocol.HeaderSize+initialBody)
	return &b
}

func (h *handler) putBuf(b *[]byte) { h.bufs.Put(b) }

// maxPooledFrame is the largest Request frame buffer kept for reuse: a
// small body plus a generous environ.
const maxPooledFrame = initialBody + 64<<10

func (h *handler) getFrameBuf() *[]byte {
	if b, ok := h.frameBufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4<<10)
	return &b
}

func (h *handler) putFrameBuf(b *[]byte) {
	if cap(*b) <= maxPooledFrame {
		*b = (*b)[:0]
		h.frameBufs.Put(b)
	}
}

// dropFragment takes a fragment ("#..." in the request target: browsers
// do not send one, but a client may) out of r.URL's path and query, as
// gunicorn splits it off: "/a?x=1#f" is PATH_INFO "/a" and QUERY_STRING
// "x=1", and "/a#f?x" has no query. RAW_URI (r.RequestURI) keeps it. A
// "%23" in the path is a "#" of the path, not a fragment, and stays.
func dropFragment(r *http.Request) {
	target, _, _ := strings.Cut(r.RequestURI, "#")
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return // "#" right after the scheme, say: the parse of the whole stands
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.URL.ForceQuery = u.Path, u.RawPath, u.RawQuery, u.ForceQuery
}

// request is what the handler has worked out of a request for its environ.
type request struct {
	scriptName, pathInfo string
	scheme               string   // wsgi.url_scheme
	names                []string // the header's names in the order the environ gets them (see fieldOrder)
}

// headerOrderer is gorn's HTTP/1 server's ResponseWriter, which writes the
// response header's fields in a given order (net/http sorts them).
type headerOrderer interface{ SetHeaderOrder(keys []string) }

// fieldOrder is the order of the request's header fields, as they came,
// from gorn's HTTP/1 server; nil from net/http's (over TLS), whose header
// map forgot it.
func fieldOrder(rw http.ResponseWriter) []string {
	if o, ok := rw.(interface{ FieldOrder() []string }); ok {
		return o.FieldOrder()
	}
	return nil
}

// sortedNames appends the names of hdr to buf, sorted: the environ's order
// when the server cannot tell the order the fields came in, the same for
// every request rather than the map's random one.
func sortedNames(hdr http.Header, buf []string) []string {
	for k := range hdr {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

// environ adds the CGI variables of PEP 3333 and gunicorn to e, the
// header's in the order of q.names; the runtime adds the wsgi.* entries.
func (h *handler) environ(e *protocol.Environ, r *http.Request, q request) {
	if h.buildEnviron(e, r, q, nil) {
		return
	}
	// A header name with "_" that reaches the app shares its variable
	// with another header's, which is rare: build again, joining them.
	e.Reset()
	h.buildEnviron(e, r, q, h.underscoreHeaders(r))
}

// buildEnviron is environ, with merge the values of the header names
// containing "_" that reach the app (see underscoreHeaders). With merge
// nil, it adds such names itself, unless one shares its variable with
// another header's: then it gives up, returning false.
func (h *handler) buildEnviron(e *protocol.Environ, r *http.Request, q request, merge map[string]string) bool {
	e.Add("REQUEST_METHOD", r.Method)
	e.Add("SCRIPT_NAME", q.scriptName)
	e.Add("PATH_INFO", q.pathInfo)
	e.Add("QUERY_STRING", r.URL.RawQuery)
	e.Add("RAW_URI", r.RequestURI)
	e.Add("SERVER_PROTOCOL", r.Proto)
	e.Add("SERVER_SOFTWARE", "gorn/"+config.Version)
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.Add("REMOTE_ADDR", host)
		e.Add("REMOTE_PORT", port)
	} else {
		e.Add("REMOTE_ADDR", unixPeer(r.RemoteAddr))
	}
	if h.proxyProtocol {
		h.proxyEnviron(e, r)
	}
	// As gunicorn: the listener's address on TCP; on a unix socket, which
	// has no port, the Host header, with the scheme's port when it names
	// none (without Host: the socket path and port 80; gunicorn's is "").
	name, port := h.serverName, h.serverPort
	if port == "" {
		port = "80"
		if r.Host != "" {
			if q.scheme == "https" {
				port = "443"
			}
			name, port = splitHost(r.Host, port)
		}
	}
	e.Add("SERVER_NAME", name)
	e.Add("SERVER_PORT", port)
	if r.Host != "" {
		e.Add("HTTP_HOST", r.Host)
	}
	if len(r.TransferEncoding) > 0 {
		e.Add("HTTP_TRANSFER_ENCODING", strings.Join(r.TransferEncoding, ","))
	}
	var key []byte
	var underBuf [2]string
	under := underBuf[:0] // names with "_" that reach the app, when merge is nil
	var trust peerTrust
	add := func(k string, vs []string) {
		switch k {
		case "Content-Type":
			e.Add("CONTENT_TYPE", strings.Join(vs, ","))
			return
		case "Content-Length":
			e.Add("CONTENT_LENGTH", vs[0])
			return
		}
		if strings.IndexByte(k, '_') >= 0 {
			if merge == nil && (h.headerMap == httpguard.HeaderMapDangerous || h.forwarders.Has(k) && trust.of(h, r)) {
				under = append(under, k)
			}
			return // X_Forwarded_For must not pose as X-Forwarded-For: see underscoreHeaders
		}
		key = environKey(key[:0], k)
		v := strings.Join(vs, ",")
		if m, ok := merge[string(key)]; ok {
			v += "," + m
			delete(merge, string(key))
		}
		e.Add(string(key), v)
	}
	added := 0
	for _, k := range q.names {
		if vs, ok := r.Header[k]; ok {
			add(k, vs)
			added++
		}
	}
	if added < len(r.Header) { // a name q.names lacks: not lost, if out of order
		for k, vs := range r.Header {
			if !slices.Contains(q.names, k) {
				add(k, vs)
			}
		}
	}
	for k, v := range merge {
		e.Add(k, v)
	}
	for _, k := range under {
		if sharesVariable(r.Header, k) {
			return false
		}
	}
	for _, k := range under {
		key = environKey(key[:0], k)
		e.Add(string(key), strings.Join(r.Header[k], ","))
	}
	return true
}

// sharesVariable reports whether a header name in hdr other than k has
// the same HTTP_ variable as k: the same letters, case aside, with "-" and
// "_" alike.
func sharesVariable(hdr http.Header, k string) bool {
	for other := range hdr {
		if len(other) != len(k) || other == k {
			continue
		}
		same := true
		for i := 0; i < len(k) && same; i++ {
			a, b := other[i], k[i]
			if a == '-' {
				a = '_'
			}
			if b == '-' {
				b = '_'
			}
			same = a == b || a|0x20 == b|0x20 && a|0x20 >= 'a' && a|0x20 <= 'z'
		}
		if same {
			return true
		}
	}
	return false
}

// proxyEnviron adds gunicorn's PROXY protocol variables when the request's
// connection began with a PROXY header carrying addresses: PROXY_PROTOCOL
// (TCP4 or TCP6), and PROXY_ADDR and PROXY_PORT, the address the client
// connected to on the proxy. REMOTE_ADDR is already the client's.
func (h *handler) proxyEnviron(e *protocol.Environ, r *http.Request) {
	if proto, addr, port, ok := h.proxyVars(r); ok {
		e.Add("PROXY_PROTOCOL", proto)
		e.Add("PROXY_ADDR", addr)
		e.Add("PROXY_PORT", port)
	}
}

// proxyVars are the values of PROXY_PROTOCOL, PROXY_ADDR and PROXY_PORT
// for the request (proxyEnviron); ok is false, and they are "", when its
// connection began with no PROXY header carrying addresses.
func (h *handler) proxyVars(r *http.Request) (proto, addr, port string, ok bool) {
	ph := h.proxyHeader(r)
	if !ph.HasAddrs() {
		return "", "", "", false
	}
	return ph.Protocol, ph.Destination.Addr().String(), strconv.Itoa(int(ph.Destination.Port())), true
}

// proxyHeader is the PROXY header the request's connection began with;
// nil if none.
func (h *handler) proxyHeader(r *http.Request) *proxyproto.Header {
	if sc, ok := r.Context().Value(ctxKey{}).(*slotConn); ok {
		return proxyproto.HeaderOf(sc.outer)
	}
	return nil
}

// environKey appends HTTP_NAME, the CGI variable of header name k.
func environKey(key []byte, k string) []byte {
	key = append(key, "HTTP_"...)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '-':
			c = '_'
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		key = append(key, c)
	}
	return key
}

// underscoreHeaders maps the CGI variables of the request's header names
// containing "_" that reach the app to their values: those in
// --forwarder-headers when the peer is trusted, and all of them when
// --header-map is dangerous (refuse answered the others with 400; drop
// leaves them out). As in gunicorn, a value then joins, after a comma,
// that of the same variable from "-" names: X-Forwarded-For and
// X_Forwarded_For are both HTTP_X_FORWARDED_FOR.
func (h *handler) underscoreHeaders(r *http.Request) map[string]string {
	dangerous := h.headerMap == httpguard.HeaderMapDangerous
	if !dangerous && h.forwarders.Empty() {
		return nil
	}
	hdr := r.Header
	var names []string
	for k := range hdr {
		if strings.IndexByte(k, '_') >= 0 && (dangerous || h.forwarders.Has(k)) {
			names = append(names, k)
		}
	}
	if len(names) == 0 || !dangerous && !h.trustedPeer(r) {
		return nil
	}
	sort.Strings(names)
	merge := make(map[string]string, len(names))
	for _, k := range names {
		key := string(environKey(nil, k))
		v := strings.Join(hdr[k], ",")
		if m, ok := merge[key]; ok {
			v = m + "," + v
		}
		merge[key] = v
	}
	return merge
}

// refuseUnderscore answers 400 to a request carrying a header name with
// "_" when --header-map is refuse, unless the name is in
// --forwarder-headers and the peer trusted, as gunicorn does. The HTTP/1
// guard refused the other names already; an HTTP/2 request passes it
// untouched. False if it answered the request.
func (h *handler) refuseUnderscore(rw http.ResponseWriter, r *http.Request) bool {
	var trust peerTrust
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 || h.forwarders.Has(k) && trust.of(h, r) {
			continue
		}
		h.reject(rw, r, http.StatusBadRequest, "Invalid HTTP header name: '"+strings.ToUpper(k)+"'")
		return false
	}
	return true
}

// requestScriptName is the request's SCRIPT_NAME, without a trailing "/":
// that of a SCRIPT_NAME header from a trusted peer when --forwarder-headers
// lets it through (the last one, if it is repeated), as in gunicorn; else
// that of gorn's environment.
func (h *handler) requestScriptName(r *http.Request) string {
	if h.fwdScriptName {
		if vs := r.Header["Script_name"]; len(vs) > 0 && h.trustedPeer(r) {
			return strings.TrimRight(vs[len(vs)-1], "/")
		}
	}
	return h.scriptName
}

// checkHTTP2 applies to an HTTP/2 request, which passes the HTTP/1 guard
// untouched, the guard's check of --limit-request-body. False if it
// answered the request.
func (h *handler) checkHTTP2(rw http.ResponseWriter, r *http.Request) bool {
	if h.bodyLimit > 0 {
		if r.ContentLength > h.bodyLimit {
			h.reject(rw, r, http.StatusRequestEntityTooLarge, "Request body is too large ("+strconv.FormatInt(r.ContentLength, 10)+" > "+strconv.FormatInt(h.bodyLimit, 10)+")")
			return false
		}
		r.Body = http.MaxBytesReader(rw, r.Body, h.bodyLimit) // bodyError answers 413
	}
	return true
}

// reject answers a request the HTTP/1 guard refused, as gunicorn answers a
// request it cannot parse: the status, a short page with the reason, and
// Connection: close. The app never sees it.
func (h *handler) reject(rw http.ResponseWriter, r *http.Request, status int, msg string) {
	start := time.Now()
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	h.log.Debug(fmt.Sprintf("Invalid request from ip=%s: %s", host, msg))
	if r.ProtoMajor == 1 { // on HTTP/2 it would end every stream of the connection
		rw.Header().Set("Connection", "close")
	}
	n := errorPage(rw, status, msg)
	dur := time.Since(start)
	h.stats.Request(status, dur)
	if h.access != nil {
		shown, line := refusedRequest(r)
		h.logAccessLine(rw, shown, line, start, dur, status, int64(n))
	}
}

// refusedRequest is the request the access log shows for one the guard
// refused: the synthetic r (GET /) carries the client's request line,
// whose method, target and version then stand in for r's.
func refusedRequest(r *http.Request) (*http.Request, string) {
	line, ok := httpguard.RejectedLine(r.Header)
	if !ok {
		return r, ""
	}
	if line == "" {
		line = "-" // refused before a line ended
	}
	shown := *r
	shown.Method, shown.RequestURI, shown.Proto = line, "", ""
	if method, rest, ok := strings.Cut(line, " "); ok {
		shown.Method, shown.RequestURI = method, rest
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			shown.RequestURI, shown.Proto = rest[:i], rest[i+1:]
		}
	}
	path, query, _ := strings.Cut(shown.RequestURI, "?")
	shown.URL = &url.URL{Path: path, RawQuery: query}
	return &shown, line
}

// urlScheme is the request's wsgi.url_scheme: h.scheme, unless the real
// peer (the proxy, not a client a PROXY header names) is trusted and sends
// secure scheme headers, which then decide; headers that disagree are an
// error (400), as in gunicorn.
func (h *handler) urlScheme(r *http.Request) (string, error) {
	scheme := h.scheme
	if scheme == "" {
		scheme = "http"
	}
	if !h.trustedPeer(r) {
		return scheme, nil
	}
	return h.schemeHeaders.Scheme(r.Header, scheme)
}

// peerTrust is trustedPeer for one request, asked at most once: 0 until
// then, 1 trusted, -1 not.
type peerTrust int8

func (p *peerTrust) of(h *handler, r *http.Request) bool {
	if *p == 0 {
		*p = -1
		if h.trustedPeer(r) {
			*p = 1
		}
	}
	return *p == 1
}

// trustedPeer reports whether the request's real peer (the proxy, not a
// client a PROXY header names) is in --forwarded-allow-ips, or on a unix
// socket.
func (h *handler) trustedPeer(r *http.Request) bool {
	if h.trusted == nil {
		return false
	}
	if sc, ok := r.Context().Value(ctxKey{}).(*slotConn); ok {
		return h.trusted.Allows(proxyproto.PeerAddr(sc.Conn))
	}
	return h.trusted.AllowsString(r.RemoteAddr)
}

// splitHost splits a Host header into name and port, defaulting the port.
func splitHost(host, defPort string) (string, string) {
	if strings.HasPrefix(host, "[") {
		if i := strings.LastIndex(host, "]"); i > 0 {
			if strings.HasPrefix(host[i+1:], ":") && len(host) > i+2 {
				return host[:i+1], host[i+2:]
			}
			return host[:i+1], defPort
		}
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && i+1 < len(host) {
		return host[:i], host[i+1:]
	} else if i >= 0 {
		return host[:i], defPort // "host:" has the default port (RFC 3986)
	}
	return host, defPort
}

// underScriptName is PATH_INFO for path under scriptName (SCRIPT_NAME,
// without a trailing slash): the rest of path; ok is false for a path
// outside it (/application is not under /app).
func underScriptName(path, scriptName string) (pathInfo string, ok bool) {
	if scriptName == "" {
		return path, true // "*" of OPTIONS * too
	}
	rest, ok := strings.CutPrefix(path, scriptName)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	return rest, true
}

// connContext lets the handler find the connection's slotConn, and through
// it the connection with all its wrappers.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if sc := findSlotConn(c); sc != nil {
		sc.outer = c
		return context.WithValue(ctx, ctxKey{}, sc)
	}
	return ctx
}

// unixPeer is REMOTE_ADDR for a peer address that is not HOST:PORT: on a
// unix socket the client is unnamed ("@" to Go), and gunicorn's
// REMOTE_ADDR is then empty (the access log shows "-").
func unixPeer(addr string) string {
	if addr == "@" {
		return ""
	}
	return addr
}

// accessLog writes access log lines: gunicorn's default format, or
// --access-logformat's.
type accessLog struct {
	mu     sync.Mutex
	w      *logs.File
	format *logs.AccessFormat // nil: the default
	pid    int                // this worker's, for %(p)s
	// syslog receives the lines too (--log-syslog), tagged syslogTag;
	// w is nil when they go to syslog only.
	syslog    *logs.Syslog
	syslogTag string
}

// logAccess writes a request's access log line: it started at start (the
// wall clock) and took dur, and its response, with status and written body
// bytes, had the headers of rw.
func (h *handler) logAccess(rw http.ResponseWriter, r *http.Request, start time.Time, dur time.Duration, status int, written int64) {
	h.logAccessLine(rw, r, "", start, dur, status, written)
}

// logAccessLine is logAccess for a request whose line as received,
// requestLine, the line shows instead of r's method, URI and version ("":
// r's).
func (h *handler) logAccessLine(rw http.ResponseWriter, r *http.Request, requestLine string, start time.Time, dur time.Duration, status int, written int64) {
	a := h.access
	host, port, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = unixPeer(r.RemoteAddr)
	}
	e := logs.AccessEntry{
		RemoteAddr:  host,
		Time:        start,
		Method:      r.Method,
		RequestURI:  r.RequestURI,
		Proto:       r.Proto,
		Status:      status,
		Bytes:       written,
		Referer:     r.Header.Get("Referer"),
		UserAgent:   r.Header.Get("User-Agent"),
		RequestLine: requestLine,
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		e.User = logs.BasicUser(auth)
	}
	if a.format != nil {
		e.RemotePort = port
		e.ScriptName = h.requestScriptName(r)
		if h.proxyProtocol {
			e.ProxyProtocol, e.ProxyAddr, e.ProxyPort, _ = h.proxyVars(r)
		}
		if r.URL != nil {
			var under bool
			if e.Path, under = underScriptName(r.URL.Path, e.ScriptName); !under {
				e.Path = r.URL.Path // gorn's 404: the app saw nothing
			}
			e.Query = r.URL.RawQuery
		}
		e.Scheme, _ = h.urlScheme(r)
		e.Duration = dur
		e.Pid = a.pid
		e.Header = r.Header
		e.ResponseHeader = rw.Header()
	}
	line := a.format.Append(make([]byte, 0, 256), &e)
	if a.syslog != nil {
		a.syslog.Send(slog.LevelInfo, a.syslogTag, fmt.Sprintf("[%d] %s", a.pid, line[:len(line)-1]))
	}
	if a.w != nil {
		a.mu.Lock()
		a.w.Write(line)
		a.mu.Unlock()
	}
}
