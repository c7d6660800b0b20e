// Command bench is wasmgate's end-to-end load harness: `go run ./bench`
// (or `make bench`) runs every scenario in one run on loopback against the
// same trivial upstream — directly, through the standard library's
// ReverseProxy, through wasmgate bare, with a native, a Wasm and a process
// filter, with the shipped Wasm chain, over HTTP/2 and HTTP/3, and through
// a pair of mTLS sidecars — and prints a markdown table, writes
// bench/results/latest.json and bench/results/latest.svg.
//
// Every proxy runs as its own process pinned to CPU 0 (taskset), the load
// generator and the upstream run in this process pinned to CPU 1, and the
// proxy's CPU time and peak RSS come from /proc. Throughput is measured in
// a closed loop at fixed concurrency; latency in an open loop at a fixed
// rate, timed from each request's scheduled start (no coordinated
// omission).
//
// Environment: BENCH_QUICK=1 for a short run (< 60 s), BENCH_ONLY=a,b to
// run some scenarios, BENCH_RATE (open-loop req/s), BENCH_CONC (closed-loop
// concurrency), BENCH_DURATION (per phase, e.g. 5s).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// params are the run's knobs.
type params struct {
	Quick    bool          `json:"quick"`
	Conc     int           `json:"concurrency"`
	Rate     int           `json:"open_loop_rate"`
	Duration time.Duration `json:"phase_duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	InFlight int           `json:"open_loop_max_in_flight"`
	Rounds   int           `json:"rounds"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "stdlib-proxy" {
		if err := runStdlibProxy(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "stdlib-proxy:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// repin re-executes the bench pinned to CPU 1 (the proxies get CPU 0). It
// returns false when pinning is not possible or already done.
func repin() (bool, error) {
	ts, err := exec.LookPath("taskset")
	if err != nil || os.Getenv("BENCH_PINNED") != "" {
		return false, nil
	}
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil || strings.TrimSpace(string(b)) == "0" {
		return false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, nil
	}
	cmd := exec.Command(ts, append([]string{"-c", "1", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), "BENCH_PINNED=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		return true, err
	}
	return true, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func run() error {
	if done, err := repin(); done || err != nil {
		return err
	}
	pinned := os.Getenv("BENCH_PINNED") != ""
	p := params{Quick: os.Getenv("BENCH_QUICK") == "1", Conc: 32, Rate: 500, Duration: 10 * time.Second, Warmup: 2 * time.Second, InFlight: 256, Rounds: 5}
	if p.Quick {
		p.Duration, p.Warmup, p.Rounds = time.Second, 200*time.Millisecond, 1
	}
	if d, err := time.ParseDuration(os.Getenv("BENCH_DURATION")); err == nil && d > 0 {
		p.Duration = d
	}
	p.Conc = envInt("BENCH_CONC", p.Conc)
	p.Rate = envInt("BENCH_RATE", p.Rate)
	p.Rounds = envInt("BENCH_ROUNDS", p.Rounds)

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "wasmgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	e := &env{root: root, work: work, conc: max(p.Conc, p.InFlight)}
	if pinned {
		e.taskset, _ = exec.LookPath("taskset")
	}
	if err := e.buildArtifacts(); err != nil {
		return err
	}
	up, stopUp, err := startUpstream()
	if err != nil {
		return err
	}
	defer stopUp()
	e.upstream = up

	m := describeMachine(pinned)
	fmt.Printf("wasmgate bench: %s, %d cores, %d GiB, Linux %s, %s; pinned=%v; closed loop %d conns x %v in %d rounds, open loop %d req/s x %v\n\n",
		m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go, pinned, p.Conc, p.Duration, p.Rounds, p.Rate, p.Duration)

	ceiling, err := measureCeiling(p)
	if err != nil {
		return err
	}
	fmt.Printf("load generator ceiling (no-op in-process server): %.0f req/s\n", ceiling)

	only := map[string]bool{}
	for _, s := range strings.Split(os.Getenv("BENCH_ONLY"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[s] = true
		}
	}
	all := scenarios()
	for _, pr := range peers() {
		if peerInstalled(pr.Name) {
			all = append(all, pr)
		}
	}
	var sel []scenario
	for _, sc := range all {
		if len(only) == 0 || only[sc.Name] || sc.Name == "bare" {
			sel = append(sel, sc)
		}
	}
	results := measureAll(e, sel, p, ceiling)
	// The machine is shared: measure the ceiling again and keep the higher.
	if again, err := measureCeiling(p); err == nil && again > ceiling {
		ceiling = again
	}
	// The direct scenario is the load generator against an in-process
	// server too: it bounds the ceiling from below.
	for _, r := range results {
		if r.Name == "direct" && r.RPS > ceiling {
			ceiling = r.RPS
		}
	}
	rep := report{Machine: m, Params: p, Ceiling: ceiling, Results: results}
	rep.compute()
	md := rep.markdown()
	fmt.Println()
	fmt.Print(md)
	dir := filepath.Join(root, "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := rep.writeJSON(filepath.Join(dir, "latest.json")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.svg"), []byte(rep.svg()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/latest.{json,svg,md}\n", dir)
	return nil
}

// live is a started scenario and what its rounds measured.
type live struct {
	sc     scenario
	r      *running
	rps    []float64
	cpu    []float64
	n, err uint64
	hist   *Hist
	// split0 is the Wasm time counters before the rounds; split the
	// per-request difference after them.
	split0 *wasmTotals
	split  *WasmSplit
}

// measureAll starts every scenario, then measures throughput and CPU in
// rounds that visit the scenarios in turn (so background load on a shared
// machine spreads over all of them instead of skewing one), takes each
// scenario's median round, and finally measures latency in an open loop.
func measureAll(e *env, scs []scenario, p params, ceiling float64) []result {
	var lives []*live
	results := make([]result, 0, len(scs))
	for _, sc := range scs {
		r, err := sc.start(e)
		if err != nil {
			fmt.Printf("%-13s skipped: %v\n", sc.Name, err)
			results = append(results, result{Name: sc.Name, Kind: sc.Kind, Desc: sc.Desc, Proto: sc.Proto, Skipped: err.Error()})
			continue
		}
		lives = append(lives, &live{sc: sc, r: r, hist: &Hist{}})
	}
	defer func() {
		for _, l := range lives {
			l.r.stop()
		}
	}()
	for _, l := range lives {
		closedLoop(l.r.target, p.Conc, p.Warmup)
	}
	for _, l := range lives {
		l.split0 = wasmTimes(l.r.admin)
	}
	per := p.Duration / time.Duration(p.Rounds)
	for round := range p.Rounds {
		for _, l := range lives {
			pids := l.r.pids()
			cpu0 := cpuOf(pids)
			cl := closedLoop(l.r.target, p.Conc, per)
			cpu := cpuOf(pids) - cpu0
			l.n += cl.Requests
			l.err += cl.Errors
			l.hist.Merge(cl.Hist)
			l.rps = append(l.rps, cl.RPS())
			if ok := cl.Requests - cl.Errors; ok > 0 && len(pids) > 0 {
				l.cpu = append(l.cpu, float64(cpu.Microseconds())/float64(ok))
			}
		}
		fmt.Printf("round %d/%d done\n", round+1, p.Rounds)
	}
	for _, l := range lives {
		if end := wasmTimes(l.r.admin); end != nil && l.split0 != nil && l.n > 0 {
			l.split = end.perRequest(l.split0, l.n)
		}
	}
	for _, l := range lives {
		sc := l.sc
		if l.n == 0 || l.err*10 > l.n {
			results = append(results, result{Name: sc.Name, Kind: sc.Kind, Desc: sc.Desc, Proto: sc.Proto,
				Skipped: fmt.Sprintf("%d of %d requests failed", l.err, l.n)})
			continue
		}
		res := result{
			Name: sc.Name, Kind: sc.Kind, Desc: sc.Desc, Proto: sc.Proto,
			RPS: median(l.rps), RPSRounds: l.rps, CPURounds: l.cpu, CPUPerReq: median(l.cpu),
			Requests: l.n, Errors: l.err,
			ClosedP50: l.hist.Quantile(0.5), ClosedP99: l.hist.Quantile(0.99),
			Split: l.split,
		}
		rate := p.Rate
		if float64(rate) > 0.5*res.RPS {
			rate = max(int(0.5*res.RPS), 50)
			res.Note = fmt.Sprintf("open loop at %d req/s (half its throughput)", rate)
		}
		ol := openLoop(l.r.target, rate, p.Duration, p.InFlight)
		res.OpenRate, res.Errors = rate, res.Errors+ol.Errors
		res.P50, res.P90, res.P99, res.P999 = ol.Hist.Quantile(0.5), ol.Hist.Quantile(0.9), ol.Hist.Quantile(0.99), ol.Hist.Quantile(0.999)
		res.Max = ol.Hist.Max()
		if pids := l.r.pids(); len(pids) > 0 {
			res.PeakRSS, res.Procs = hwmOf(pids), len(pids)
		}
		if l.r.mtls != nil {
			if hs, reqs, ok := l.r.mtls(); ok {
				res.Handshakes, res.MTLSRequests = hs, reqs
				note := fmt.Sprintf("%.0f mTLS handshakes between the sidecars for %.0f requests over the whole run", hs, reqs)
				if res.Note != "" {
					note = res.Note + "; " + note
				}
				res.Note = note
			}
		}
		fmt.Printf("%-13s %8.0f req/s  p50 %7s  p99 %7s  cpu %6.1f µs/req  rss %5.1f MiB%s\n", res.Name, res.RPS,
			fmtDur(res.P50), fmtDur(res.P99), res.CPUPerReq, float64(res.PeakRSS)/(1<<20), res.limitNote(ceiling))
		results = append(results, res)
	}
	// Keep the scenarios' order for the table.
	order := map[string]int{}
	for i, sc := range scs {
		order[sc.Name] = i
	}
	sort.Slice(results, func(a, b int) bool { return order[results[a].Name] < order[results[b].Name] })
	return results
}

// median returns the median of vs (0 for none).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measureCeiling runs the load generator against a no-op server in this
// process: no result above about this rate is limited by the proxy.
func measureCeiling(p params) (float64, error) {
	addr, stop, err := startUpstream()
	if err != nil {
		return 0, err
	}
	defer stop()
	c, closeFn := newClient("h1", max(p.Conc, p.InFlight))
	defer closeFn()
	t := &target{url: "http://" + addr + "/", client: c}
	closedLoop(t, p.Conc, p.Warmup)
	return closedLoop(t, p.Conc, p.Duration).RPS(), nil
}

// startUpstream serves the trivial upstream: 200 with a 3-byte body.
func startUpstream() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	body := []byte("ok\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "3")
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return l.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the wasmgate module")
		}
		dir = parent
	}
}

// buildArtifacts builds wasmgate, the Wasm plugins the scenarios load
// (when build/plugins lacks them) and add-header as a process plugin.
func (e *env) buildArtifacts() error {
	bin := filepath.Join(e.root, "build", "bin")
	e.wasmgate = filepath.Join(bin, "wasmgate")
	e.plugins = filepath.Join(e.root, "build", "plugins")
	e.procAdd = filepath.Join(bin, "process", "add-header")
	e.cache = filepath.Join(e.root, "build", "cache", "wasm")
	goBuild := func(env []string, args ...string) error {
		cmd := exec.Command("go", append([]string{"build"}, args...)...)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %v\n%s", args, err, out)
		}
		return nil
	}
	if err := goBuild(nil, "-o", e.wasmgate, "./cmd/wasmgate"); err != nil {
		return err
	}
	if err := goBuild(nil, "-tags", "wasmgate_process", "-o", e.procAdd, "./pluginsdk-examples/add-header"); err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"add-header": "./pluginsdk-examples/add-header", "api-key": "./plugins/api-key",
		"rate-limit": "./plugins/rate-limit", "authz": "./plugins/authz", "transform": "./plugins/transform",
	} {
		out := filepath.Join(e.plugins, name+".wasm")
		if _, err := os.Stat(out); err == nil {
			continue
		}
		if err := goBuild([]string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared", "-o", out, pkg); err != nil {
			return err
		}
	}
	// The raw-ABI header guest of the host's tests: no SDK, the host's own
	// per-plugin cost end to end.
	e.abiHeader = filepath.Join(e.work, "header-abi.wasm")
	if err := goBuild([]string{"GOOS=wasip1", "GOARCH=wasm"}, "-buildmode=c-shared", "-o", e.abiHeader, "./proxy/wasm/testdata/guests/header"); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(e.work, "tls"), 0o755)
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
