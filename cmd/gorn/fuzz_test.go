package main

import (
	"math"
	"testing"
	"time"
)

// FuzzSeconds: any duration flag value either fails or parses to a
// duration that came from a finite number of seconds or Go's syntax; it
// never panics.
func FuzzSeconds(f *testing.F) {
	for _, seed := range []string{"30", "0.5", "500ms", "2m", "-1", "NaN", "inf", "1e300", " 5 ", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var s seconds
		if err := s.UnmarshalText([]byte(text)); err != nil {
			return
		}
		if d := time.Duration(s); d == math.MinInt64 {
			t.Fatalf("%q parsed to the overflow value %d", text, d)
		}
	})
}
