#!/usr/bin/env bash
# Soak benchmark (not in CI): examples/sam-app as a real box (`esb up` on
# Docker Compose) under SOAK_SECONDS of mixed load with a short idle timeout,
# so that workers scale to zero and start cold again many times:
#
#   HTTPS routes     GET /hello, GET /greet (image), PUT/GET/DELETE /files (S3),
#                    GET /call (Caller invokes Hello with boto3), POST/GET /notes
#                    (PostgreSQL), with the box's token where routes need it
#   Invoke API       boto3 lambda.invoke, RequestResponse (Hello, Greeter) and
#                    Event (Hello), SigV4 with the box's key
#   schedule         TickFunction, every minute, by the gateway
#
# Busy phases (SOAK_BUSY_SECONDS at SOAK_RATE requests/s from SOAK_CONCURRENCY
# threads; bench/soak.py) alternate with quiet phases that last until every
# worker of the load's functions is gone. Every SOAK_SAMPLE_SECONDS the RSS of
# the gateway, agent and storage processes (the containers' PIDs, read from
# /proc on the host) and the number of worker containers are sampled.
#
# Prints requests, errors by kind (target 0), p50/p99/max latency per kind,
# cold starts, scale-to-zero cycles, the RSS series (first, min, max, last,
# slope), and after `esb down -v` what is left of the project (target 0).
# The RSS samples and the workers' container events stay in a temporary
# directory (printed). Exits non-zero when a request failed or anything is left.
#
# Environment: SOAK_SECONDS (600), SOAK_IDLE_SECONDS (the box's
# ESB_IDLE_TIMEOUT_SECONDS, 10), SOAK_BUSY_SECONDS (40), SOAK_RATE (25),
# SOAK_CONCURRENCY (4), SOAK_SAMPLE_SECONDS (15). Every port is 0 (free
# ports). Only loopback is contacted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PROJECT=bench-soak-$$
PYTHON=${ESB_TEST_PYTHON:-$ROOT/.cache/venv/bin/python3}
export SOAK_SECONDS=${SOAK_SECONDS:-600} SOAK_IDLE_SECONDS=${SOAK_IDLE_SECONDS:-10} SOAK_PROJECT=$PROJECT

die() { echo "bench: $*" >&2; exit 1; }
for image in esb-gateway esb-agent esb-storage esb-postgres esb-lambda-python:3.11; do
  docker image inspect "$image" >/dev/null 2>&1 || die "no $image image: run ./dev images"
done
"$PYTHON" -c 'import boto3, requests' 2>/dev/null || die "no boto3/requests in $PYTHON: run scripts/install-deps"

cargo build --quiet --release -p esb-cli
ESB=$ROOT/target/release/esb
work=$(mktemp -d)
out=$(mktemp -d "${TMPDIR:-/tmp}/esb-soak.XXXXXX")
app=$work/bench-soak-app
cp -r examples/sam-app "$app"
export ESB_PROJECT=$PROJECT ESB_PIP="$PYTHON -m pip" ESB_IDLE_TIMEOUT_SECONDS=$SOAK_IDLE_SECONDS
for v in ESB_PORT_GATEWAY_HTTPS ESB_PORT_GATEWAY_HTTP ESB_PORT_GRPC ESB_PORT_S3 ESB_PORT_DATABASE ESB_PORT_LOGS; do
  export "$v=0"
done
# What is left of the project: containers, volumes, networks (Compose's and the box network), workers.
left() {
  local c v n w
  c=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  v=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
  n=$(docker network ls --format '{{.Name}}' | grep -c "^${PROJECT}_" || true)
  w=$(docker ps -aq --filter "label=esb.stack=$PROJECT" | wc -l)
  echo "$c $v $n $w"
}
cleanup() {
  (cd "$app" && "$ESB" down -v >/dev/null 2>&1) || true
  docker ps -aq --filter "label=esb.stack=$PROJECT" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^esb-fn-bench-soak-app-' | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$app"

"$ESB" build >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; die "esb build failed"; }
"$ESB" up --wait >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "esb up failed"; }
"$ESB" info --json >"$work/info.json"
echo "soak: $PROJECT up, idle timeout ${SOAK_IDLE_SECONDS}s, ${SOAK_SECONDS}s of load; gateway image" \
  "$(docker image inspect -f '{{.Id}}' esb-gateway | cut -c8-19), agent $(docker image inspect -f '{{.Id}}' esb-agent | cut -c8-19)" >&2

status=0
"$PYTHON" "$ROOT/bench/soak.py" "$work/info.json" "$out" || status=$?

t0=$(date +%s.%N)
down=ok
"$ESB" down -v >"$work/down.log" 2>&1 || { down="FAILED: $(grep -m1 'Error\|error' "$work/down.log")"; status=1; }
down_ms=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
read -r c v n w <<<"$(left)"
((c + v + n + w == 0)) || status=1
printf '%-46s %s\n' "down -v" "$down_ms ms, $down" \
  "left after down -v: containers/volumes/networks" "$c / $v / $n" \
  "left after down -v: worker containers (label)" "$w"
exit "$status"
