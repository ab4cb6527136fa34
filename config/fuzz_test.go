package config

import "testing"

// FuzzParseSize: any --max-worker-memory value either fails or gives a
// size that is not negative; it never panics.
func FuzzParseSize(f *testing.F) {
	for _, seed := range []string{"0", "512M", "1.5G", "100KiB", "7 mb", "-1", "G", "1e3K", "NaN", "inf"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		n, err := ParseSize(text)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", text, n)
		}
	})
}
