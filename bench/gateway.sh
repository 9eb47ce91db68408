#!/usr/bin/env bash
# Benchmark of the gateway's warm path (DESIGN.md §6): latency and throughput
# of a route through the gateway next to calling the same worker directly,
# side by side in one run, with wrk on one connection (a worker runs one
# invocation at a time); and the RSS of the gateway and the agent, idle and
# after the load. Real binaries: esb-gateway and esb-agent (Docker backend,
# loopback worker addresses). The function has 1769 MB, a whole vCPU, so
# CPU throttling of small workers does not blur the comparison. Only
# loopback is contacted.
#
# Environment: BENCH_DURATION (wrk run, default 10s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-10s}
STACK=bench-$$
TAG=esb-bench-python:latest
TARGET=x86_64-unknown-linux-musl

die() { echo "bench: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed: run scripts/install-deps"
docker image inspect esb-lambda-python:3.11 >/dev/null 2>&1 || die "no esb-lambda-python image: run ./dev images"

work=$(mktemp -d)
pids=()
cleanup() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  docker ps -aq --filter "label=esb.stack=$STACK" | xargs -r docker rm -f >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

cargo build --quiet --release --target "$TARGET" -p esb-gateway -p esb-agent
cp bench/functions/python/bench.py "$work/"
printf 'FROM esb-lambda-python:3.11\nCOPY bench.py /var/task/\nCMD ["bench.handler"]\n' >"$work/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$work" >/dev/null 2>"$work/build.log" || { cat "$work/build.log"; exit 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/gateway.json" <<JSON
{"version": 1,
 "functions": [{"name": "bench", "image": "$TAG", "memory_mb": 1769, "timeout_seconds": 30}],
 "routes": [{"method": "GET", "path": "/bench", "function": "bench", "payload": "rest_v1", "auth": "none"}]}
JSON

HTTP=$(free_port) HTTPS=$(free_port) GRPC=$(free_port)
ESB_CATALOG=$work/gateway.json ESB_HTTP_ADDR=127.0.0.1:$HTTP ESB_HTTPS_ADDR=127.0.0.1:$HTTPS \
  ESB_GRPC_ADDR=127.0.0.1:$GRPC ESB_TLS_CERT=$work/cert.pem ESB_TLS_KEY=$work/key.pem \
  ESB_STATE_DIR=$work/state \
  ESB_AUTH_PASSWORD=bench-password ESB_API_KEY=bench-api-key-0123456789 \
  ESB_JWT_SECRET=bench-secret-0123456789abcdef0123456789 ESB_LOG=warn \
  "target/$TARGET/release/esb-gateway" 2>"$work/gateway.log" &
pids+=($!); gw=$!
ESB_GATEWAY_URL=http://127.0.0.1:$GRPC ESB_NODE_ID=$STACK ESB_STACK=$STACK \
  ESB_WORKER_ADDRESS_MODE=loopback ESB_AGENT_METRICS_ADDR=127.0.0.1:$(free_port) ESB_LOG=warn \
  "target/$TARGET/release/esb-agent" 2>"$work/agent.log" &
pids+=($!); agent=$!

url=http://127.0.0.1:$HTTP/bench
for _ in $(seq 1 300); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
curl -sf -o /dev/null "$url" || { head -n 30 "$work"/agent.log "$work"/gateway.log; die "the route never answered"; }
idle_gw=$(rss "$gw") idle_agent=$(rss "$agent")

token=$(curl -sf -XPOST "http://127.0.0.1:$HTTP/user/auth/v1" -H 'x-api-key: bench-api-key-0123456789' \
  -d '{"AuthParameters":{"USERNAME":"admin","PASSWORD":"bench-password"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["AuthenticationResult"]["IdToken"])')
worker=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$HTTP/admin/v1/workers" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["workers"][0]["address"])')
direct=http://$worker/2015-03-31/functions/function/invocations
# The direct call carries a real API Gateway event of the same kind.
export BODY_FILE=$ROOT/crates/gateway/fixtures/example-apigw-request.json

run() { # name url [wrk args...]
  local name=$1 target=$2 out p50 p99 rps
  shift 2
  wrk -t1 -c1 -d2s "$@" "$target" >/dev/null
  out=$(wrk -t1 -c1 -d"$DURATION" --latency "$@" "$target")
  p50=$(awk '/Latency Distribution/{f=1} f && $1=="50%"{print $2; exit}' <<<"$out")
  p99=$(awk '/Latency Distribution/{f=1} f && $1=="99%"{print $2; exit}' <<<"$out")
  rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
  printf '%-34s %10s %10s %10s %s\n' "$name" "$p50" "$p99" "$rps" "$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
}

echo "== warm invoke, wrk -t1 -c1 -d$DURATION"
printf '%-34s %10s %10s %10s\n' path p50 p99 req/s
run "direct to the worker (RIE API)" "$direct" -s bench/post-file.lua
run "gateway HTTP route (GET /bench)" "$url"
run "gateway HTTPS route (GET /bench)" "https://127.0.0.1:$HTTPS/bench"
echo
echo "== RSS"
printf '%-10s %12s %12s\n' process idle "after load"
printf '%-10s %9s kB %9s kB\n' gateway "$idle_gw" "$(rss "$gw")"
printf '%-10s %9s kB %9s kB\n' agent "$idle_agent" "$(rss "$agent")"
