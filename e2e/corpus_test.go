package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorn-project/gorn/httpguard/corpus"
)

// TestCorpus replays every case of testdata/requests over a real socket
// against the real binary and checks the status of each response and, for
// the first, the environ and body the app saw. One gorn serves all the
// cases with the same flags.
func TestCorpus(t *testing.T) {
	py := python(t)
	cases, err := corpus.Load("../testdata/requests")
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][]corpus.Case{}
	for _, c := range cases {
		k := strings.Join(c.Flags, " ")
		groups[k] = append(groups[k], c)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if name == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--keep-alive", "5"}, groups[k][0].Flags...)
			s := start(t, py, append(args, "guard_app:app")...)
			s.ready("/")
			for _, c := range groups[k] {
				t.Run(c.Name, func(t *testing.T) { replayCase(t, s, c) })
			}
		})
	}
}

// replayCase sends one case's bytes at once and reads the responses.
func replayCase(t *testing.T, s *server, c corpus.Case) {
	conn, br := s.rawConn()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(c.Raw); err != nil {
		t.Fatal(err)
	}
	for i, want := range c.Statuses {
		resp, err := readFinal(br)
		if err != nil {
			t.Fatalf("response %d: %v (want status %d)", i+1, err, want)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("response %d: reading its body: %v", i+1, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("response %d: status %d, want %d\n%s", i+1, resp.StatusCode, want, body)
		}
		if want >= 400 && !resp.Close {
			t.Errorf("response %d: a %d without Connection: close", i+1, want)
		}
		if i == 0 && (len(c.Env) > 0 || len(c.NoEnv) > 0 || c.Body != nil) {
			checkSeen(t, body, c)
		}
	}
	if last := c.Statuses[len(c.Statuses)-1]; last >= 400 {
		// Nothing after a refused request is served: the connection ends.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := br.ReadByte(); err == nil {
			rest, _ := br.Peek(br.Buffered())
			t.Fatalf("bytes after the refusal: %q", append([]byte{b}, rest...))
		} else if !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("the connection did not close after the refusal: %v", err)
		}
	}
}

// readFinal reads the next final (non-1xx) response.
func readFinal(br *bufio.Reader) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode >= 200 {
			return resp, err
		}
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(err.Error(), "reset")
}

// checkSeen compares what guard_app reported with the case's expectations.
func checkSeen(t *testing.T, body []byte, c corpus.Case) {
	t.Helper()
	var seen struct {
		Environ map[string]string `json:"environ"`
		Body    string            `json:"body"`
	}
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("the app's answer is not its JSON: %v\n%s", err, body)
	}
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		if got, ok := seen.Environ[k]; !ok || got != v {
			t.Errorf("environ %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range c.NoEnv {
		if v, ok := seen.Environ[k]; ok {
			t.Errorf("environ has %s = %q", k, v)
		}
	}
	if c.Body != nil && seen.Body != *c.Body {
		t.Errorf("the app read the body %q, want %q", seen.Body, *c.Body)
	}
}
