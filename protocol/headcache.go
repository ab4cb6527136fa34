package protocol

import (
	"encoding/binary"
	"sync"
)

// Bounds of a HeadCache.
const (
	// HeadCacheSize is how many heads a HeadCache keeps (256).
	HeadCacheSize = 256
	// HeadCacheMaxHead is the largest head, in bytes, a HeadCache keeps
	// (2 KiB): a full cache then holds at most about 512 KiB of heads.
	HeadCacheMaxHead = 2 << 10
)

// HeadCache remembers the response heads that ParseStart accepted, by
// their bytes, so that a head an app sends again costs a map lookup instead
// of its decoding and checks. Most apps send a few heads over and over; the
// runtime keeps a cache of the same shape on its side (docs/architecture.md,
// "start_response checks a head once").
//
// Refused heads and heads over HeadCacheMaxHead bytes are not kept. When
// the cache fills up with fewer hits than it holds heads since it last
// filled, the app's heads rarely repeat (a cookie or an ETag in every
// response), and the cache turns itself off for good; otherwise it starts
// over. The zero value is ready to use and safe for concurrent use.
type HeadCache struct {
	mu    sync.Mutex
	heads map[string]ResponseHead
	hits  int
	off   bool
}

// ParseStart is ParseStart with the cache. The head it returns may be
// shared with other callers: its Headers must not be modified.
func (c *HeadCache) ParseStart(p []byte) (ResponseHead, []byte, error) {
	if len(p) < 4 {
		return ParseStart(p)
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n > len(p)-4 || n > HeadCacheMaxHead {
		return ParseStart(p)
	}
	key, body := p[4:4+n], p[4+n:]
	c.mu.Lock()
	if h, ok := c.heads[string(key)]; ok {
		c.hits++
		c.mu.Unlock()
		return h, body, nil
	}
	off := c.off
	c.mu.Unlock()
	h, body, err := ParseStart(p)
	if err != nil || off {
		return h, body, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.off:
	case len(c.heads) < HeadCacheSize:
		if c.heads == nil {
			c.heads = make(map[string]ResponseHead)
		}
		c.heads[string(key)] = h
	case c.hits < len(c.heads):
		c.off, c.heads = true, nil
	default:
		c.hits = 0
		clear(c.heads)
		c.heads[string(key)] = h
	}
	return h, body, nil
}

// Len returns how many heads the cache holds, and whether it has turned
// itself off.
func (c *HeadCache) Len() (n int, off bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.heads), c.off
}
