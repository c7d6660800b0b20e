package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// peers are other proxies run with an equivalent plain reverse-proxy
// config, each with one worker (thread) as wasmgate gets one CPU. They are
// added only when installed.
func peers() []scenario {
	return []scenario{
		{Name: "nginx", Desc: "nginx, 1 worker, upstream keepalive", Proto: "h1", start: startNginx},
		{Name: "haproxy", Desc: "HAProxy, 1 thread, http-reuse always", Proto: "h1", start: startHAProxy},
		{Name: "caddy", Desc: "Caddy reverse_proxy", Proto: "h1", start: startCaddy},
	}
}

// peerInstalled reports whether the peer's binary is on PATH.
func peerInstalled(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// startPeer writes cfg, runs bin with args (in the foreground) pinned like
// wasmgate, and waits until it proxies.
func startPeer(e *env, name, cfgName, cfg, bin string, args func(cfgPath string, port int) []string, port int) (*running, error) {
	dir := filepath.Join(e.work, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, cfgName)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	full, err := exec.LookPath(bin)
	if err != nil {
		return nil, err
	}
	cmd := e.command(full, args(path, port)...)
	cmd.Dir = dir
	stop, err := e.startProc(name, cmd)
	if err != nil {
		return nil, err
	}
	t := e.newTarget("h1", fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err := waitReady(t, 20*time.Second); err != nil {
		t.close()
		stop()
		b, _ := os.ReadFile(filepath.Join(e.work, name+".log"))
		return nil, fmt.Errorf("%s: %w: %s", name, err, b)
	}
	pid := cmd.Process.Pid
	return &running{target: t, pids: func() []int { return family([]int{pid}) }, stop: func() { t.close(); stop() }}, nil
}

func startNginx(e *env) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.work, "nginx")
	cfg := fmt.Sprintf(`worker_processes 1;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up { server %[2]s; keepalive 256; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, e.upstream, port)
	return startPeer(e, "nginx", "nginx.conf", cfg, "nginx", func(p string, _ int) []string {
		return []string{"-p", dir, "-c", p}
	}, port)
}

func startHAProxy(e *env) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  server s1 %s
`, port, e.upstream)
	return startPeer(e, "haproxy", "haproxy.cfg", cfg, "haproxy", func(p string, _ int) []string {
		return []string{"-db", "-f", p}
	}, port)
}

func startCaddy(e *env) (*running, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`{
	admin off
	auto_https off
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	reverse_proxy %s
}
`, port, e.upstream)
	r, err := startPeer(e, "caddy", "Caddyfile", cfg, "caddy", func(p string, _ int) []string {
		return []string{"run", "--config", p, "--adapter", "caddyfile"}
	}, port)
	if err != nil {
		return nil, err
	}
	return r, nil
}
