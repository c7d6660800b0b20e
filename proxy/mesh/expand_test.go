package mesh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
)

const sidecarYAML = `
mode: sidecar
admin: {address: "127.0.0.1:0"}
mesh:
  trust_domain: wasmgate.test
  service: orders
  cert_file: certs/orders/cert.pem
  key_file: certs/orders/key.pem
  bundle_file: certs/orders/bundle.pem
  inbound:
    address: 127.0.0.1:15001
    app: 127.0.0.1:18001
    mtls: permissive
    identity_header: x-forwarded-client-cert
    filters:
      - {name: deny, kind: direct-deny}
  outbound:
    address: 127.0.0.1:15002
    retry: {attempts: 2}
  services:
    - name: payments
      endpoints: ["127.0.0.1:16001"]
      mirror: {cluster: audit, percent: 10}
      cluster: {circuit_breaker: {max_requests: 7}}
    - name: audit
      namespace: ops
      versions:
        - {name: v1, weight: 90, endpoints: ["127.0.0.1:16011"]}
        - {name: v2, weight: 10, endpoints: ["127.0.0.1:16012"]}
  registry_file: registry.yaml
`

const registryYAML = `
services:
  - name: notifications
    spiffe_id: spiffe://wasmgate.test/custom/notifier
    endpoints: ["127.0.0.1:16021"]
`

func loadSidecar(t *testing.T, yaml, registry string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "sidecar.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if registry != "" {
		if err := os.WriteFile(filepath.Join(dir, "registry.yaml"), []byte(registry), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestExpand(t *testing.T) {
	cfg := loadSidecar(t, sidecarYAML, registryYAML)
	dir := filepath.Dir(cfg.File)
	if err := Expand(cfg); err != nil {
		t.Fatal(err)
	}
	listeners := map[string]config.Listener{}
	for _, l := range cfg.Listeners {
		listeners[l.Name] = l
	}
	in, out := listeners[InboundListener], listeners[OutboundListener]
	if in.Address != "127.0.0.1:15001" || in.Role != "inbound" || in.Upstream != AppCluster || in.TLS == nil {
		t.Fatalf("inbound listener %+v", in)
	}
	if tl := in.TLS; tl.ClientAuth != "optional" || !tl.AllowPlaintext || tl.TrustDomain != "wasmgate.test" ||
		tl.ClientCAFile != filepath.Join(dir, "certs/orders/bundle.pem") || tl.Certs[0].CertFile != filepath.Join(dir, "certs/orders/cert.pem") {
		t.Fatalf("inbound tls %+v", tl)
	}
	if out.Address != "127.0.0.1:15002" || out.Role != "outbound" || out.TLS != nil {
		t.Fatalf("outbound listener %+v", out)
	}

	clusters := map[string]config.Cluster{}
	for _, c := range cfg.Clusters {
		clusters[c.Name] = c
	}
	if c := clusters[AppCluster]; len(c.Endpoints) != 1 || c.Endpoints[0].Address != "127.0.0.1:18001" || c.TLS != nil {
		t.Fatalf("app cluster %+v", c)
	}
	pay := clusters[ServiceCluster("payments")]
	if pay.TLS == nil || pay.TLS.SPIFFEID != "spiffe://wasmgate.test/ns/default/sa/payments" || pay.Protocol != "auto" ||
		pay.TLS.CertFile != filepath.Join(dir, "certs/orders/cert.pem") || pay.TLS.CAFile != filepath.Join(dir, "certs/orders/bundle.pem") {
		t.Fatalf("payments cluster %+v tls %+v", pay, pay.TLS)
	}
	if pay.CircuitBreaker == nil || pay.CircuitBreaker.MaxRequests != 7 || pay.Balancer != "round_robin" {
		t.Fatalf("payments knobs/defaults lost: %+v", pay)
	}
	v2 := clusters[VersionCluster("audit", "v2")]
	if v2.TLS == nil || v2.TLS.SPIFFEID != "spiffe://wasmgate.test/ns/ops/sa/audit" || v2.Endpoints[0].Address != "127.0.0.1:16012" {
		t.Fatalf("audit v2 cluster %+v", v2)
	}
	if n := clusters[ServiceCluster("notifications")]; n.TLS == nil || n.TLS.SPIFFEID != "spiffe://wasmgate.test/custom/notifier" {
		t.Fatalf("registry-file service cluster %+v", n)
	}

	routes := map[string]config.Route{}
	for _, r := range cfg.Routes {
		routes[r.Name] = r
	}
	ir := routes[InboundRoute]
	if ir.Cluster != AppCluster || len(ir.Filters) != 2 || ir.Filters[0].Kind != IdentityFilterKind || ir.Filters[1].Name != "deny" ||
		len(ir.Listeners) != 1 || ir.Listeners[0] != InboundListener {
		t.Fatalf("inbound route %+v", ir)
	}
	pr := routes[OutboundRoute("payments")]
	if pr.Cluster != ServiceCluster("payments") || strings.Join(pr.Match.Hosts, ",") != "payments,payments.default" ||
		pr.Retry == nil || pr.Retry.Attempts != 2 || pr.Mirror == nil || pr.Mirror.Cluster != VersionCluster("audit", "v1") ||
		pr.Listeners[0] != OutboundListener || pr.Timeout.Seconds() != 15 {
		t.Fatalf("payments route %+v", pr)
	}
	ar := routes[OutboundRoute("audit")]
	if len(ar.WeightedClusters) != 2 || ar.WeightedClusters[0].Weight != 90 || ar.Cluster != "" {
		t.Fatalf("audit route %+v", ar)
	}
	if got := WatchFiles(cfg); len(got) != 1 || got[0] != filepath.Join(dir, "registry.yaml") {
		t.Fatalf("WatchFiles = %v", got)
	}
}

func TestExpandErrors(t *testing.T) {
	base := strings.Replace(sidecarYAML, "  registry_file: registry.yaml\n", "", 1)
	tests := []struct {
		name, yaml, registry, want string
	}{
		{"registry missing", sidecarYAML, "", "registry"},
		{"registry unknown field", sidecarYAML, "services: [{name: x, endpoints: [\"127.0.0.1:1\"], bogus: 1}]", "bogus"},
		{"registry invalid", sidecarYAML, "services: [{name: x}]", "needs endpoints or versions"},
		{"registry duplicate", sidecarYAML, "services: [{name: payments, endpoints: [\"127.0.0.1:1\"]}]", "duplicate service"},
		{"reserved cluster", base + "clusters: [{name: \"mesh:payments\", endpoints: [\"127.0.0.1:1\"]}]\n", "", "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadSidecar(t, tt.yaml, tt.registry)
			err := Expand(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Expand = %v, want error containing %q", err, tt.want)
			}
		})
	}
	cfg := loadSidecar(t, base, "")
	cfg.Mode = config.ModeEdge
	if err := Expand(cfg); err == nil {
		t.Fatal("Expand accepted a mesh section in edge mode")
	}
}
