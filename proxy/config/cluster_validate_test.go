package config

import (
	"strings"
	"testing"
)

func TestClusterPolicyValidation(t *testing.T) {
	base := "listeners: [{name: a, address: \"127.0.0.1:1\"}]\nroutes: [{cluster: c}]\nclusters:\n  - name: c\n"
	tests := []struct {
		name string
		src  string
		want string // "" means valid
	}{
		{"defaults are valid", "    endpoints: [\"127.0.0.1:2\"]\n    health_check: {}\n    outlier: {}\n    circuit_breaker: {}\n    retry_budget: {}\n", ""},
		{"weight", "    endpoints: [{address: \"127.0.0.1:2\", weight: -1}]\n", "clusters[0].endpoints[0].weight"},
		{"health path", "    endpoints: [\"127.0.0.1:2\"]\n    health_check: {path: healthz}\n", "clusters[0].health_check.path"},
		{"health interval", "    endpoints: [\"127.0.0.1:2\"]\n    health_check: {interval: -1s}\n", "clusters[0].health_check: interval"},
		{"ejection percent", "    endpoints: [\"127.0.0.1:2\"]\n    outlier: {max_ejection_percent: 150}\n", "clusters[0].outlier.max_ejection_percent"},
		{"breaker", "    endpoints: [\"127.0.0.1:2\"]\n    circuit_breaker: {max_pending: -1}\n", "clusters[0].circuit_breaker"},
		{"retry backoff", "    endpoints: [\"127.0.0.1:2\"]\n    retry: {backoff: -1s}\n", "clusters[0].retry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(base+tc.src))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
