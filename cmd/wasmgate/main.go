// Command wasmgate is the proxy binary: `run` serves a config, `validate`
// checks one, `demo` runs the edge demo with its echo upstreams, `ca` manages
// mesh identities, `hash-key` hashes API keys, `version` prints the version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/wasmgate/wasmgate/plugins/keyhash"
	"github.com/wasmgate/wasmgate/proxy"
	"github.com/wasmgate/wasmgate/proxy/config"
	"github.com/wasmgate/wasmgate/proxy/mesh"
)

// version is set with -ldflags "-X main.version=..."; otherwise the module
// version or "dev".
var version = ""

const usage = `wasmgate — an HTTP proxy whose policy lives in WebAssembly plugins

usage:
  wasmgate run -c FILE [--mode edge|sidecar] [--log-format json|console]
  wasmgate validate -c FILE [--mode edge|sidecar]
  wasmgate demo [-c configs/edge.yaml]
  wasmgate ca init --trust-domain TD --out DIR
  wasmgate ca issue --service NAME [--namespace NS] [--ttl 24h] --ca DIR --out DIR
  wasmgate hash-key [KEY]      (reads the key from stdin when not given)
  wasmgate version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "ca":
		err = cmdCA(args[1:], stdout)
	case "hash-key":
		err = cmdHashKey(args[1:], stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "wasmgate", getVersion())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "wasmgate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(stderr, "wasmgate:", err)
		return 1
	}
	return 0
}

func getVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type commonFlags struct {
	config, mode, logFormat string
}

func parseCommon(name string, args []string, stderr io.Writer, def string) (*commonFlags, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &commonFlags{}
	fs.StringVar(&c.config, "c", def, "config file")
	fs.StringVar(&c.config, "config", def, "config file")
	fs.StringVar(&c.mode, "mode", "", "override the config's mode: edge or sidecar")
	fs.StringVar(&c.logFormat, "log-format", "", "json or console")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if c.config == "" {
		return nil, nil, fmt.Errorf("%s: -c FILE is required", name)
	}
	if c.mode != "" && c.mode != config.ModeEdge && c.mode != config.ModeSidecar {
		return nil, nil, fmt.Errorf("%s: --mode must be edge or sidecar, got %q", name, c.mode)
	}
	return c, fs, nil
}

// cmdRun serves until SIGINT or SIGTERM, then drains and exits 0.
func cmdRun(args []string, stderr io.Writer) error {
	c, _, err := parseCommon("run", args, stderr, "")
	if err != nil {
		return err
	}
	g, err := startGateway(c)
	if err != nil {
		return err
	}
	return waitAndShutdown(g)
}

func startGateway(c *commonFlags) (*proxy.Gateway, error) {
	ctx := context.Background()
	pp := &processPlugins{}
	g, err := proxy.NewGateway(ctx, proxy.GatewayOptions{
		ConfigPath:   c.config,
		Mode:         c.mode,
		LogFormat:    c.logFormat,
		Version:      getVersion(),
		Factories:    pp.register,
		PluginStatus: pp.status,
	})
	if err != nil {
		return nil, err
	}
	if err := g.Start(ctx); err != nil {
		return nil, err
	}
	return g, nil
}

// waitAndShutdown blocks until SIGINT/SIGTERM and drains the gateway. A
// second signal exits at once.
func waitAndShutdown(g *proxy.Gateway) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	s := <-sig
	g.Log.Info("shutting down: draining in-flight requests", zap.String("signal", s.String()))
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			g.Log.Info("stopped cleanly")
		}
		return err
	case <-sig:
		return errors.New("second signal: exiting without draining")
	}
}

// cmdValidate loads the config, expands the mesh section and builds every
// filter (compiling plugins), printing every problem. Exit 1 on any.
func cmdValidate(args []string, stdout, stderr io.Writer) int {
	c, _, err := parseCommon("validate", args, stderr, "")
	if err != nil {
		fmt.Fprintln(stderr, "wasmgate:", err)
		return 2
	}
	cfg, err := config.LoadMode(c.config, c.mode)
	if err == nil {
		err = mesh.Expand(cfg)
	}
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := proxy.Check(ctx, cfg, (&processPlugins{}).register); err != nil {
		printProblems(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (mode %s, %d listeners, %d routes, %d clusters)\n", c.config, cfg.Mode, len(cfg.Listeners), len(cfg.Routes), len(cfg.Clusters))
	return 0
}

func printProblems(w io.Writer, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printProblems(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func cmdCA(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("ca: want init or issue")
	}
	fs := flag.NewFlagSet("ca "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "init":
		td := fs.String("trust-domain", "", "trust domain, e.g. wasmgate.local")
		out := fs.String("out", "", "directory for ca.crt and ca.key")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *td == "" || *out == "" {
			return errors.New("ca init: --trust-domain and --out are required")
		}
		if _, err := mesh.InitCA(*out, *td); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created CA for trust domain %s in %s\n", *td, *out)
		return nil
	case "issue":
		o := mesh.IssueOptions{}
		fs.StringVar(&o.Service, "service", "", "service name")
		fs.StringVar(&o.Namespace, "namespace", "default", "namespace")
		fs.DurationVar(&o.TTL, "ttl", 24*time.Hour, "certificate lifetime")
		fs.StringVar(&o.CADir, "ca", "", "CA directory (from ca init)")
		fs.StringVar(&o.OutDir, "out", "", "output directory")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if o.Service == "" || o.CADir == "" || o.OutDir == "" {
			return errors.New("ca issue: --service, --ca and --out are required")
		}
		id, exp, err := mesh.Issue(o)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "issued %s (expires %s) into %s\n", id, exp.Format(time.RFC3339), o.OutDir)
		return nil
	}
	return fmt.Errorf("ca: unknown subcommand %q (want init or issue)", args[0])
}

func cmdHashKey(args []string, stdout io.Writer) error {
	var key string
	if len(args) > 0 {
		key = args[0]
	} else {
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
		if err != nil {
			return err
		}
		key = trimNewline(string(b))
	}
	if key == "" {
		return errors.New("hash-key: empty key")
	}
	fmt.Fprintln(stdout, keyhash.Hash(key))
	return nil
}

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
