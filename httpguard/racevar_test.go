package httpguard

// raceEnabled is set when the tests are built with -race, under which
// sync.Pool drops a share of what it is given on purpose.
var raceEnabled bool
