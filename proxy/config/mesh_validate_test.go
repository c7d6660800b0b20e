package config

import (
	"strings"
	"testing"
	"time"
)

const meshOK = `
mode: sidecar
mesh:
  trust_domain: wasmgate.local
  service: orders
  cert_file: c.pem
  key_file: k.pem
  bundle_file: b.pem
  inbound: {address: "127.0.0.1:15001", app: "127.0.0.1:18001"}
  outbound: {address: "127.0.0.1:15002"}
  services:
    - {name: payments, endpoints: ["127.0.0.1:16001"]}
`

func TestMeshDefaults(t *testing.T) {
	c, err := Parse("sidecar.yaml", []byte(meshOK))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Mesh
	if m.Namespace != "default" || m.Inbound.MTLS != MeshMTLSStrict || m.Outbound.Timeout != 15*time.Second ||
		m.Services[0].Namespace != "default" || m.Services[0].Endpoints[0].Weight != 1 {
		t.Fatalf("mesh defaults: %+v inbound %+v outbound %+v services %+v", m, m.Inbound, m.Outbound, m.Services)
	}
}

func TestMeshValidate(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string
		extra   string
		want    []string
	}{
		{name: "edge mode", replace: [2]string{"mode: sidecar", "mode: edge"}, want: []string{"mesh: needs mode sidecar"}},
		{name: "trust domain", replace: [2]string{"wasmgate.local", "Wasm Gate"}, want: []string{"mesh.trust_domain"}},
		{name: "service name", replace: [2]string{"service: orders", "service: a/b"}, want: []string{"mesh.service"}},
		{name: "files", replace: [2]string{"  cert_file: c.pem\n", ""}, want: []string{"mesh.cert_file: is required"}},
		{name: "mtls", replace: [2]string{`app: "127.0.0.1:18001"`, `app: "127.0.0.1:18001", mtls: loose`}, want: []string{"mesh.inbound.mtls"}},
		{name: "outbound not loopback", replace: [2]string{`{address: "127.0.0.1:15002"}`, `{address: "0.0.0.0:15002"}`}, want: []string{"mesh.outbound.address: must be a loopback"}},
		{name: "same address", replace: [2]string{`"127.0.0.1:15002"`, `"127.0.0.1:15001"`}, want: []string{"must differ"}},
		{name: "identity header", replace: [2]string{`app: "127.0.0.1:18001"`, `app: "127.0.0.1:18001", identity_header: "x y"`}, want: []string{"mesh.inbound.identity_header"}},
		{name: "service without endpoints", extra: "    - {name: ledger}\n", want: []string{"mesh.services[1]: needs endpoints or versions"}},
		{name: "duplicate service", extra: "    - {name: payments, endpoints: [\"127.0.0.1:1\"]}\n", want: []string{"duplicate service"}},
		{name: "versions", extra: "    - {name: ledger, versions: [{name: v1, weight: 0, endpoints: [\"127.0.0.1:1\"]}, {name: v1, endpoints: []}]}\n",
			want: []string{"mesh.services[1].versions: weights must add up", "duplicate version", "mesh.services[1].versions[1].endpoints"}},
		{name: "mirror", extra: "    - {name: ledger, endpoints: [\"127.0.0.1:1\"], mirror: {cluster: nope, percent: 500}}\n",
			want: []string{"mesh.services[1].mirror.cluster: unknown service", "mesh.services[1].mirror.percent"}},
		{name: "cluster knobs", extra: "    - {name: ledger, endpoints: [\"127.0.0.1:1\"], cluster: {name: x, retry: {attempts: 50}}}\n",
			want: []string{"only resilience knobs", "mesh.services[1].cluster.retry.attempts"}},
		{name: "spiffe id", extra: "    - {name: ledger, endpoints: [\"127.0.0.1:1\"], spiffe_id: \"https://x\"}\n", want: []string{"spiffe_id: must be a spiffe"}},
		{name: "no sides", replace: [2]string{"  inbound: {address: \"127.0.0.1:15001\", app: \"127.0.0.1:18001\"}\n  outbound: {address: \"127.0.0.1:15002\"}\n", ""}, want: []string{"needs inbound, outbound or both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := meshOK + tt.extra
			if tt.replace[0] != "" {
				if !strings.Contains(src, tt.replace[0]) {
					t.Fatalf("test bug: %q not in config", tt.replace[0])
				}
				src = strings.Replace(src, tt.replace[0], tt.replace[1], 1)
			}
			_, err := Parse("sidecar.yaml", []byte(src))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
