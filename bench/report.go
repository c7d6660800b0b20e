package main

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// result is one scenario's row.
type result struct {
	Name    string `json:"name"`
	Kind    string `json:"kind,omitempty"`
	Desc    string `json:"description"`
	Proto   string `json:"protocol"`
	Skipped string `json:"skipped,omitempty"`
	Note    string `json:"note,omitempty"`
	// Handshakes and MTLSRequests are the sidecar pair's TLS handshakes and
	// the requests its inbound served, over the whole run.
	Handshakes   float64 `json:"mtls_handshakes,omitempty"`
	MTLSRequests float64 `json:"mtls_requests,omitempty"`

	// Closed loop.
	RPS       float64       `json:"requests_per_second"`
	Requests  uint64        `json:"requests"`
	Errors    uint64        `json:"errors"`
	ClosedP50 time.Duration `json:"closed_loop_p50_ns"`
	ClosedP99 time.Duration `json:"closed_loop_p99_ns"`
	// CPUPerReq is the proxy processes' CPU µs per request (closed loop).
	CPUPerReq float64 `json:"cpu_us_per_request"`
	// RPSRounds and CPURounds are the rounds' values; the table shows their medians.
	RPSRounds []float64 `json:"rps_rounds,omitempty"`
	CPURounds []float64 `json:"cpu_us_rounds,omitempty"`
	PeakRSS   int64     `json:"peak_rss_bytes"`
	// Split is the Wasm time split per request (Wasm scenarios only).
	Split *WasmSplit `json:"wasm_split,omitempty"`
	Procs int        `json:"processes"`

	// Open loop.
	OpenRate int           `json:"open_loop_rate"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	P999     time.Duration `json:"p999_ns"`
	Max      time.Duration `json:"max_ns"`

	// Ratios to the bare proxy.
	RPSRatio float64 `json:"rps_vs_bare,omitempty"`
	CPURatio float64 `json:"cpu_vs_bare,omitempty"`
}

// limitNote flags a result close to the load generator's ceiling.
func (r result) limitNote(ceiling float64) string {
	if ceiling > 0 && r.RPS > 0.8*ceiling {
		return "  (near the load generator ceiling)"
	}
	return ""
}

// overhead is one row of the per-plugin overhead table.
type overhead struct {
	Kind     string  `json:"kind"`
	Scenario string  `json:"scenario"`
	CPUus    float64 `json:"added_cpu_us_per_request"`
	CPUMin   float64 `json:"added_cpu_us_min"`
	CPUMax   float64 `json:"added_cpu_us_max"`
	P50us    float64 `json:"added_p50_us"`
}

type report struct {
	Machine   machine    `json:"machine"`
	Params    params     `json:"params"`
	Ceiling   float64    `json:"load_generator_ceiling_rps"`
	Results   []result   `json:"results"`
	Overheads []overhead `json:"overheads"`
}

func (rep *report) find(name string) *result {
	for i := range rep.Results {
		if rep.Results[i].Name == name && rep.Results[i].Skipped == "" {
			return &rep.Results[i]
		}
	}
	return nil
}

// compute fills the ratios and the overhead table.
func (rep *report) compute() {
	bare := rep.find("bare")
	if bare == nil {
		return
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Skipped != "" {
			continue
		}
		if bare.RPS > 0 {
			r.RPSRatio = r.RPS / bare.RPS
		}
		if bare.CPUPerReq > 0 && r.CPUPerReq > 0 {
			r.CPURatio = r.CPUPerReq / bare.CPUPerReq
		}
		if r.Kind != "" {
			// Pair each round with bare's round of the same pass: they ran
			// seconds apart, so background load mostly cancels out.
			var diffs []float64
			for k := range min(len(r.CPURounds), len(bare.CPURounds)) {
				diffs = append(diffs, r.CPURounds[k]-bare.CPURounds[k])
			}
			o := overhead{Kind: r.Kind, Scenario: r.Name, CPUus: median(diffs), P50us: float64(r.P50-bare.P50) / 1e3}
			if len(diffs) > 0 {
				o.CPUMin, o.CPUMax = slices.Min(diffs), slices.Max(diffs)
			}
			rep.Overheads = append(rep.Overheads, o)
		}
	}
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// markdown renders the tables.
func (rep *report) markdown() string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, %d GiB, Linux %s, %s. Proxy pinned to CPU 0, load generator and upstream to CPU 1: %v.\n",
		m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go, m.Pinned)
	fmt.Fprintf(&b, "Closed loop: %d connections for %v in %d interleaved rounds, median round (req/s, CPU). Open loop: %d req/s for %v, latency from the scheduled start (p50..p99.9). Load generator ceiling: %.0f req/s.\n\n",
		rep.Params.Conc, rep.Params.Duration, rep.Params.Rounds, rep.Params.Rate, rep.Params.Duration, rep.Ceiling)
	b.WriteString("| scenario | req/s | vs bare | p50 | p90 | p99 | p99.9 | CPU s / 1000 req | CPU vs bare | peak RSS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s |||||||||\n", r.Name, r.Skipped)
			continue
		}
		cpu, rss := "-", "-"
		if r.CPUPerReq > 0 {
			cpu = fmt.Sprintf("%.3f", r.CPUPerReq/1000)
		}
		if r.PeakRSS > 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(r.PeakRSS)/(1<<20))
		}
		name := r.Name
		if r.Note != "" {
			name += " †"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, r.RPS, ratio(r.RPSRatio),
			fmtDur(r.P50), fmtDur(r.P90), fmtDur(r.P99), fmtDur(r.P999), cpu, ratio(r.CPURatio), rss)
	}
	for _, r := range rep.Results {
		if r.Note != "" {
			fmt.Fprintf(&b, "\n† %s: %s.", r.Name, r.Note)
		}
	}
	b.WriteString("\n\nScenarios: ")
	var ds []string
	for _, r := range rep.Results {
		ds = append(ds, fmt.Sprintf("**%s** %s", r.Name, r.Desc))
	}
	b.WriteString(strings.Join(ds, "; ") + ".\n")
	if len(rep.Overheads) > 0 {
		b.WriteString("\nPer-plugin overhead against bare wasmgate (process: proxy and plugin process together):\n\n")
		b.WriteString("| kind | scenario | added CPU µs / req (median of paired rounds) | range over rounds | added p50 µs |\n|---|---|---:|---:|---:|\n")
		for _, o := range rep.Overheads {
			fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f .. %.1f | %.0f |\n", o.Kind, o.Scenario, o.CPUus, o.CPUMin, o.CPUMax, o.P50us)
		}
	}
	if line := pairLine(rep.Results); line != "" {
		b.WriteString("\n" + line + "\n")
	}
	for _, p := range [][2]string{{"bare", "stdlib"}, {"bare-post", "stdlib-post"}} {
		if line := baselineLine(rep.Results, p[0], p[1]); line != "" {
			b.WriteString("\n" + line + "\n")
		}
	}
	var split []result
	for _, r := range rep.Results {
		if r.Split != nil {
			split = append(split, r)
		}
	}
	if len(split) > 0 {
		b.WriteString("\nWhere a Wasm filter's time goes, per request (wall time inside the proxy, from the plugins' counters on /plugins; guest = guest code, host = our host functions it called):\n\n")
		b.WriteString("| scenario | guest calls | instance acquire µs | guest µs | host µs | host calls |\n|---|---:|---:|---:|---:|---:|\n")
		for _, r := range split {
			sp := r.Split
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", r.Name, sp.Calls, sp.AcquireUs, sp.GuestUs, sp.HostUs, sp.HostCalls)
		}
	}
	return b.String()
}

func (rep *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// svg draws throughput bars (left) and open-loop latency percentiles on a
// log scale (right), one row per scenario.
func (rep *report) svg() string {
	var rows []result
	for _, r := range rep.Results {
		if r.Skipped == "" {
			rows = append(rows, r)
		}
	}
	const (
		rowH   = 26
		top    = 60
		labelW = 120
		barW   = 330
		gap    = 60
		latW   = 380
	)
	width := labelW + barW + gap + latW + 30
	height := top + rowH*len(rows) + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="15" font-weight="bold">wasmgate bench — %s</text>`+"\n", html.EscapeString(rep.Machine.Date))
	fmt.Fprintf(&b, `<text x="%d" y="45" font-weight="bold">throughput (req/s, closed loop, %d conns)</text>`+"\n", labelW, rep.Params.Conc)
	lx := labelW + barW + gap
	fmt.Fprintf(&b, `<text x="%d" y="45" font-weight="bold">latency (open loop, log scale)</text>`+"\n", lx)
	maxRPS := 1.0
	minLat, maxLat := math.Inf(1), 0.0
	for _, r := range rows {
		maxRPS = math.Max(maxRPS, r.RPS)
		for _, d := range []time.Duration{r.P50, r.P999} {
			if d > 0 {
				minLat = math.Min(minLat, float64(d))
				maxLat = math.Max(maxLat, float64(d))
			}
		}
	}
	if maxLat == 0 {
		minLat, maxLat = 1e4, 1e6
	}
	steps := niceSteps(minLat, maxLat)
	lo, hi := steps[0], steps[len(steps)-1]
	xLat := func(d time.Duration) float64 {
		return float64(lx) + (math.Log10(float64(d))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*latW
	}
	// Latency grid.
	for _, v := range steps {
		x := xLat(time.Duration(v))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top-8, x, top+rowH*len(rows))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x, top+rowH*len(rows)+15, fmtDur(time.Duration(v)))
	}
	colors := []string{"#1f77b4", "#2ca02c", "#ff7f0e", "#d62728"}
	names := []string{"p50", "p90", "p99", "p99.9"}
	for i, r := range rows {
		y := top + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+15, html.EscapeString(r.Name))
		w := r.RPS / maxRPS * barW
		fill := "#4c78a8"
		if r.Name == "bare" {
			fill = "#f58518"
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %.0f req/s</title></rect>`+"\n", labelW, y+3, w, rowH-8, fill, html.EscapeString(r.Name), r.RPS)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#222">%.0f</text>`+"\n", float64(labelW)+w+4, y+15, r.RPS)
		ps := []time.Duration{r.P50, r.P90, r.P99, r.P999}
		if ps[0] > 0 && ps[3] > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", xLat(ps[0]), y+11, xLat(ps[3]), y+11)
		}
		for j, d := range ps {
			if d <= 0 {
				continue
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%d" r="4.5" fill="%s"><title>%s %s: %s</title></circle>`+"\n", xLat(d), y+11, colors[j], html.EscapeString(r.Name), names[j], fmtDur(d))
		}
	}
	ly := top + rowH*len(rows) + 40
	for j, n := range names {
		x := lx + j*80
		fmt.Fprintf(&b, `<circle cx="%d" cy="%d" r="5" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x, ly, colors[j], x+9, ly+4, n)
	}
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">open loop %d req/s; orange bar: bare wasmgate</text>`+"\n", ly+4, rep.Params.Rate)
	b.WriteString("</svg>\n")
	return b.String()
}

// niceSteps returns axis values 1, 2, 5 x 10^k from the largest one at or
// below lo to the smallest one at or above hi.
func niceSteps(lo, hi float64) []float64 {
	var out []float64
	for e := math.Floor(math.Log10(lo)); ; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			next := 2 * v // 1 -> 2 and 5 -> 10
			if m == 2 {
				next = 2.5 * v
			}
			switch {
			case next <= lo:
				continue // a larger step is still at or below lo
			case len(out) > 0 && out[len(out)-1] >= hi:
				return out
			}
			out = append(out, v)
		}
	}
}

// baselineLine compares scenario a with baseline b of the same run (CPU
// per request and throughput, medians of their rounds), or returns ""
// when either is missing.
func baselineLine(results []result, a, b string) string {
	var ra, rb *result
	for i := range results {
		r := &results[i]
		if r.Skipped != "" || r.RPS <= 0 || r.CPUPerReq <= 0 {
			continue
		}
		switch r.Name {
		case a:
			ra = r
		case b:
			rb = r
		}
	}
	if ra == nil || rb == nil {
		return ""
	}
	return fmt.Sprintf("%s vs %s: %.2fx the CPU per request (%.1f vs %.1f µs), %.2fx the requests/s.",
		a, b, ra.CPUPerReq/rb.CPUPerReq, ra.CPUPerReq, rb.CPUPerReq, ra.RPS/rb.RPS)
}

// pairLine compares what a sidecar pair adds to the direct call's p50 with
// what one bare edge hop adds, in the same run (the mesh issue's target:
// at most 2x), or returns "" without the three scenarios.
func pairLine(results []result) string {
	var direct, bare, pair *result
	for i := range results {
		r := &results[i]
		if r.Skipped != "" || r.P50 <= 0 {
			continue
		}
		switch r.Name {
		case "direct":
			direct = r
		case "bare":
			bare = r
		case "sidecar-pair":
			pair = r
		}
	}
	if direct == nil || bare == nil || pair == nil || bare.P50 <= direct.P50 {
		return ""
	}
	hop, two := bare.P50-direct.P50, pair.P50-direct.P50
	return fmt.Sprintf("Sidecar pair: adds %s to the direct p50, one bare edge hop adds %s: %.2fx (both proxies of the pair share CPU 0).",
		fmtDur(two), fmtDur(hop), float64(two)/float64(hop))
}
