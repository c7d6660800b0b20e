package mesh

import (
	"path/filepath"
	"testing"

	"github.com/wasmgate/wasmgate/proxy/config"
)

// TestDemoConfigs loads and expands every config of configs/mesh-demo.
func TestDemoConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/mesh-demo/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("demo configs: %v %v", files, err)
	}
	if _, err := LoadRegistry("../../configs/mesh-demo/registry/services.yaml", "default"); err != nil {
		t.Error(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := Expand(cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Mode != config.ModeSidecar {
				return
			}
			if len(cfg.Listeners) == 0 || len(cfg.Clusters) == 0 {
				t.Fatalf("nothing generated: %d listeners, %d clusters", len(cfg.Listeners), len(cfg.Clusters))
			}
			// Relative paths become absolute, resolved against the config's directory.
			want, _ := filepath.Abs(filepath.Join("../../.wasmgate-demo/mesh", cfg.Mesh.Service, "cert.pem"))
			for _, l := range cfg.Listeners {
				if l.TLS != nil && l.TLS.Certs[0].CertFile != want {
					t.Fatalf("listener %s cert %q, want %q", l.Name, l.TLS.Certs[0].CertFile, want)
				}
			}
		})
	}
}
