#!/usr/bin/env bash
# mesh-demo: builds wasmgate, the demo apps and two plugins, creates a
# CA and one identity per service under .wasmgate-demo/mesh (git-ignored),
# then starts on loopback only:
#
#   edge wasmgate          127.0.0.1:8180 (admin :9190)
#   orders        sidecar  inbound :15101  outbound :15102  app :18101 (admin :9191)
#   payments      sidecar  inbound :15201                   app :18201 (admin :9192)
#   notifications sidecar  inbound :15301  outbound :15302  app :18301 (admin :9193)
#
# It prints what to curl and what to expect, and stops everything on Ctrl-C.
# Logs go to .wasmgate-demo/mesh/logs/.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
BIN=build/bin
DEMO=.wasmgate-demo/mesh
TD=wasmgate.local
CONF=configs/mesh-demo

need() { command -v "$1" >/dev/null 2>&1 || { echo "mesh-demo: $1 is required" >&2; exit 1; }; }
need "$GO"
need curl

echo "==> building wasmgate, meshdemo-app and the authz and rate-limit plugins"
mkdir -p "$BIN" build/plugins "$DEMO/logs"
"$GO" build -o "$BIN/wasmgate" ./cmd/wasmgate
"$GO" build -o "$BIN/meshdemo-app" ./cmd/meshdemo-app
for p in authz rate-limit; do
	GOOS=wasip1 GOARCH=wasm "$GO" build -buildmode=c-shared -o "build/plugins/$p.wasm" "./plugins/$p"
done

echo "==> identities (trust domain $TD) in $DEMO"
if [ ! -f "$DEMO/ca/ca.key" ]; then
	"$BIN/wasmgate" ca init --trust-domain "$TD" --out "$DEMO/ca"
fi
for svc in edge orders payments notifications; do
	"$BIN/wasmgate" ca issue --service "$svc" --ttl 24h --ca "$DEMO/ca" --out "$DEMO/$svc"
done

pids=()
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "==> stopping"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	exit 0
}
trap cleanup EXIT INT TERM

start() { # name, command...
	local name=$1
	shift
	"$@" >"$DEMO/logs/$name.log" 2>&1 &
	pids+=($!)
}

echo "==> starting apps, sidecars and the edge (logs in $DEMO/logs)"
start app-orders "$BIN/meshdemo-app" -service orders -listen 127.0.0.1:18101 -outbound 127.0.0.1:15102
start app-payments "$BIN/meshdemo-app" -service payments -listen 127.0.0.1:18201
start app-notifications "$BIN/meshdemo-app" -service notifications -listen 127.0.0.1:18301 -outbound 127.0.0.1:15302
start sidecar-orders "$BIN/wasmgate" run -c "$CONF/orders.yaml"
start sidecar-payments "$BIN/wasmgate" run -c "$CONF/payments.yaml"
start sidecar-notifications "$BIN/wasmgate" run -c "$CONF/notifications.yaml"
start edge "$BIN/wasmgate" run -c "$CONF/edge.yaml"

# Wait until every proxy reports ready on its admin port.
for port in 9191 9192 9193 9190; do
	for _ in $(seq 1 150); do
		if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then continue 2; fi
		for p in "${pids[@]}"; do
			if ! kill -0 "$p" 2>/dev/null; then
				echo "mesh-demo: a process exited early; see $DEMO/logs/" >&2
				tail -n 20 "$DEMO"/logs/*.log >&2 || true
				exit 1
			fi
		done
		sleep 0.2
	done
	echo "mesh-demo: admin :$port not ready after 30s; see $DEMO/logs/" >&2
	exit 1
done

cat <<EOF

mesh demo is up. Try:

  curl -s http://127.0.0.1:8180/orders/checkout
    -> 200 {"service":"orders","result":"order placed", "hops": [
         {"service":"orders",   "verified_caller":"spiffe://$TD/ns/default/sa/edge",   "trace_id":"T"},
         {"service":"payments", "verified_caller":"spiffe://$TD/ns/default/sa/orders", "trace_id":"T"}]}
       every hop shows the identity its sidecar verified over mTLS, and the same trace id T.

  curl -s http://127.0.0.1:8180/notifications/charge
    -> 403: notifications calls payments, whose authz plugin allows only orders to POST /charge;
       "downstream" holds payments' 403 JSON with the denying rule.

  curl -sk https://127.0.0.1:15201/charge
    -> handshake refused (certificate required): payments' inbound is strict mTLS
       and curl has no identity.

Rotate a certificate while it runs (no request fails, new handshakes use it):
  $BIN/wasmgate ca issue --service payments --ttl 1h --ca $DEMO/ca --out $DEMO/payments

Ctrl-C stops everything.

EOF
echo "==> self-check"
curl -s -o /dev/null -w "GET /orders/checkout       -> %{http_code} (want 200)\n" http://127.0.0.1:8180/orders/checkout || true
curl -s -o /dev/null -w "GET /notifications/charge  -> %{http_code} (want 403)\n" http://127.0.0.1:8180/notifications/charge || true

wait
