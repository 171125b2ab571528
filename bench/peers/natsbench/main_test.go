package main

import (
	"strings"
	"testing"
	"time"
)

// fields splits a summary line into its key=value pairs, failing on a repeated key.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	if !strings.HasPrefix(line, "natsbench ") {
		t.Fatalf("line does not start with natsbench: %q", line)
	}
	m := map[string]string{}
	for _, tok := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			t.Fatalf("token %q is not key=value in %q", tok, line)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("key %q twice in %q", k, line)
		}
		m[k] = v
	}
	return m
}

func TestSummaryHasRateCountAndPercentiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	m := fields(t, summary("sync", 1, 2000, 3, 500*time.Millisecond, lat))
	want := map[string]string{
		"scenario": "sync", "clients": "1", "msgs": "2000", "errors": "3",
		"secs": "0.500000", "msgs_per_s": "4000.0", "p50_us": "51", "p99_us": "100",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s=%q, want %q", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("keys %v, want exactly %v", m, want)
	}
}

func TestSummaryWithoutLatenciesSaysSo(t *testing.T) {
	m := fields(t, summary("replay_pull", 1, 10, 0, 0, nil))
	if m["p50_us"] != "-" || m["p99_us"] != "-" {
		t.Errorf("want p50_us=- p99_us=-, got %v", m)
	}
	if m["msgs"] != "10" {
		t.Errorf("msgs=%q", m["msgs"])
	}
}
