package observe

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmgate/wasmgate/abi"
)

// series returns the values of name's series by plugin label.
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "plugin" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestPluginFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Something else already owns this name (not a plugin family).
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "taken_total", Help: "x"}))
	wasm, proc := NewPluginFamilies(reg), NewPluginFamilies(reg)

	refused := []struct {
		name string
		kind PluginMetricKind
		want string
	}{
		{"wasmgate_http_requests_total", PluginCounter, "prefix is the proxy's"},
		{"bad name", PluginCounter, "invalid metric name"},
		{"taken_total", PluginCounter, "register metric"},
		{"odd_kind", 9, "unknown kind"},
	}
	for _, tt := range refused {
		if _, err := wasm.Family(tt.kind, tt.name, ""); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Family(%q): err = %v, want %q", tt.name, err, tt.want)
		}
	}

	f, err := wasm.Family(PluginCounter, "hits_total", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wasm.Family(PluginGauge, "hits_total", ""); err == nil {
		t.Fatal("same name, other kind: no error")
	}
	a, err := f.Series("a")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{2, -1, math.NaN(), math.Inf(1)} {
		a.Record(v) // only the 2 counts
	}
	// The other host shares the family (same registry, same kind).
	g, err := proc.Family(PluginCounter, "hits_total", "")
	if err != nil {
		t.Fatalf("second host: %v", err)
	}
	b, _ := g.Series("b")
	b.Record(3)
	if got := series(t, reg, "hits_total"); got["a"] != 2 || got["b"] != 3 || len(got) != 2 {
		t.Errorf("series = %v, want a=2 (negative, NaN, Inf ignored) and b=3 through the other host", got)
	}

	// Close unregisters only what these families registered themselves.
	proc.Close()
	if n := len(series(t, reg, "hits_total")); n != 2 {
		t.Fatalf("after the adopting host closed: %d series, want 2", n)
	}
	wasm.Close()
	if n := len(series(t, reg, "hits_total")); n != 0 {
		t.Fatalf("after the owner closed: %d series, want 0", n)
	}
}

// TestPluginKindsMatchTheABI: the hosts convert the ABI's kinds by a cast.
func TestPluginKindsMatchTheABI(t *testing.T) {
	for _, k := range []struct {
		abi abi.MetricKind
		obs PluginMetricKind
	}{{abi.MetricCounter, PluginCounter}, {abi.MetricGauge, PluginGauge}, {abi.MetricHistogram, PluginHistogram}} {
		if PluginMetricKind(k.abi) != k.obs {
			t.Fatalf("abi kind %d is not PluginMetricKind %d", k.abi, k.obs)
		}
	}
}
