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
	p := params{Quick: os.Getenv("BENCH_QUICK") == "1", Conc: 32, Rate: 500, Duration: 10 * time.Second, Warmup: 2 * time.Second, InFlight: 256}
	if p.Quick {
		p.Duration, p.Warmup = time.Second, 200*time.Millisecond
	}
	if d, err := time.ParseDuration(os.Getenv("BENCH_DURATION")); err == nil && d > 0 {
		p.Duration = d
	}
	p.Conc = envInt("BENCH_CONC", p.Conc)
	p.Rate = envInt("BENCH_RATE", p.Rate)

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
	fmt.Printf("wasmgate bench: %s, %d cores, %d GiB, Linux %s, %s; pinned=%v; closed loop %d conns x %v, open loop %d req/s x %v\n\n",
		m.CPU, m.Cores, m.MemGiB, m.Kernel, m.Go, pinned, p.Conc, p.Duration, p.Rate, p.Duration)

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
	var results []result
	for _, sc := range all {
		if len(only) > 0 && !only[sc.Name] && sc.Name != "bare" {
			continue
		}
		t0 := time.Now()
		r, err := runScenario(e, sc, p)
		if err != nil {
			fmt.Printf("%-13s skipped: %v\n", sc.Name, err)
			results = append(results, result{Name: sc.Name, Kind: sc.Kind, Desc: sc.Desc, Proto: sc.Proto, Skipped: err.Error()})
			continue
		}
		fmt.Printf("%-13s %8.0f req/s  p50 %7s  p99 %7s  cpu %6.1f µs/req  rss %5.1f MiB  (%.1fs)%s\n", r.Name, r.RPS,
			fmtDur(r.P50), fmtDur(r.P99), r.CPUPerReq, float64(r.PeakRSS)/(1<<20), time.Since(t0).Seconds(), r.limitNote(ceiling))
		results = append(results, r)
	}
	// The machine is shared: measure the ceiling again and keep the higher.
	if again, err := measureCeiling(p); err == nil && again > ceiling {
		ceiling = again
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

// runScenario starts a scenario, warms it up, measures throughput (closed
// loop, with the proxy's CPU) and latency (open loop), and stops it.
func runScenario(e *env, sc scenario, p params) (result, error) {
	r, err := sc.start(e)
	if err != nil {
		return result{}, err
	}
	defer r.stop()
	closedLoop(r.target, p.Conc, p.Warmup)
	pids := r.pids()
	cpu0 := cpuOf(pids)
	cl := closedLoop(r.target, p.Conc, p.Duration)
	cpu := cpuOf(pids) - cpu0
	if cl.Requests == 0 || cl.Errors*10 > cl.Requests {
		return result{}, fmt.Errorf("%d of %d requests failed", cl.Errors, cl.Requests)
	}
	rate := p.Rate
	note := ""
	if float64(rate) > 0.5*cl.RPS() {
		rate = max(int(0.5*cl.RPS()), 50)
		note = fmt.Sprintf("open loop at %d req/s (half its throughput)", rate)
	}
	ol := openLoop(r.target, rate, p.Duration, p.InFlight)
	res := result{
		Name: sc.Name, Kind: sc.Kind, Desc: sc.Desc, Proto: sc.Proto, Note: note,
		RPS: cl.RPS(), Requests: cl.Requests, Errors: cl.Errors + ol.Errors,
		ClosedP50: cl.Hist.Quantile(0.5), ClosedP99: cl.Hist.Quantile(0.99),
		OpenRate: rate,
		P50:      ol.Hist.Quantile(0.5), P90: ol.Hist.Quantile(0.9), P99: ol.Hist.Quantile(0.99), P999: ol.Hist.Quantile(0.999),
		Max: ol.Hist.Max(), Procs: len(pids),
	}
	if len(pids) > 0 {
		res.CPUPerReq = float64(cpu.Microseconds()) / float64(cl.Requests-cl.Errors)
		res.PeakRSS = hwmOf(pids)
	}
	return res, nil
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
