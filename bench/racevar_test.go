package main

// raceEnabled is set when the tests are built with -race.
var raceEnabled bool
