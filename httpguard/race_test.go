//go:build race

package httpguard

func init() { raceEnabled = true }
