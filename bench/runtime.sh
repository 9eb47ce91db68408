#!/usr/bin/env bash
# Benchmark of the worker shim against AWS's Runtime Interface Emulator (RIE),
# side by side on the same image and handler (DESIGN.md §6):
#   warm invoke latency p50/p99 and throughput (wrk, one connection: a worker
#   runs one invocation at a time), shim RSS, and cold start (`docker run` to
#   first response) against a raw `docker run` of the same image.
# Only loopback is contacted. Needs the base images (./dev bench runtime
# builds them) and AWS's RIE binary, which scripts/install-deps extracts
# from the aws-sam-cli wheel into .cache/aws-lambda-rie.
#
# Environment: BENCH_DURATION (wrk run, default 10s), BENCH_COLD_RUNS (10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DURATION=${BENCH_DURATION:-10s}
COLD_RUNS=${BENCH_COLD_RUNS:-10}
RIE=$ROOT/.cache/aws-lambda-rie
TAG=esb-bench-python:latest
PTAG=esb-bench-provided:latest

die() { echo "bench: $*" >&2; exit 1; }
[[ -x $RIE ]] || die "AWS RIE not found at $RIE: run scripts/install-deps"
command -v wrk >/dev/null || die "wrk is not installed: run scripts/install-deps"

containers=()
ctx=$(mktemp -d)
cleanup() {
  ((${#containers[@]})) && docker rm -f "${containers[@]}" >/dev/null 2>&1
  rm -rf "$ctx"
}
trap cleanup EXIT

# The same image serves both: the shim is its entrypoint, RIE is mounted and
# set as the entrypoint instead.
cp bench/functions/python/bench.py "$ctx/"
printf 'FROM esb-lambda-python:3.11\nCOPY bench.py /var/task/\nCMD ["bench.handler"]\n' >"$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$TAG" "$ctx" >/dev/null
cargo build --quiet --release --target x86_64-unknown-linux-musl -p esb-testkit --bin fixture-bootstrap
cp target/x86_64-unknown-linux-musl/release/fixture-bootstrap "$ctx/bootstrap"
printf 'FROM esb-lambda-provided:al2023\nCOPY bootstrap /var/task/bootstrap\n' >"$ctx/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$PTAG" "$ctx" >/dev/null

RIE_ARGS=(-v "$RIE:/aws-lambda-rie:ro" --entrypoint /aws-lambda-rie)
declare -A RUN=(
  [esb-python]="$TAG"
  [rie-python]="${RIE_ARGS[*]} $TAG python3 -m awslambdaric bench.handler"
  [esb-provided]="$PTAG"
  [rie-provided]="${RIE_ARGS[*]} $PTAG /var/task/bootstrap"
)
ORDER=(esb-python rie-python esb-provided rie-provided)

start() { # name -> url
  local id port
  # shellcheck disable=SC2086
  id=$(docker run -d -p 127.0.0.1::8080 -e AWS_LAMBDA_FUNCTION_TIMEOUT=30 ${RUN[$1]})
  containers+=("$id")
  port=$(docker port "$id" 8080/tcp | head -n1 | sed 's/.*://')
  echo "$id http://127.0.0.1:$port/2015-03-31/functions/function/invocations"
}

wait_first() { # url
  local i
  for i in $(seq 1 600); do
    curl -sf -o /dev/null -XPOST "$1" -d '{"n":0}' && return 0
    sleep 0.05
  done
  die "no response from $1"
}

rss_kb() { # container id -> "rss hwm" of its PID 1 (the shim or RIE)
  local pid
  pid=$(docker inspect -f '{{.State.Pid}}' "$1")
  awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{print r, h}' "/proc/$pid/status"
}

echo "== warm invoke: wrk -t1 -c1 -d$DURATION, payload {\"n\": 1} (one invocation at a time per worker)"
printf '%-14s %10s %10s %10s %12s %12s\n' variant p50 p99 req/s "RSS(PID 1)" "peak RSS"
for name in "${ORDER[@]}"; do
  read -r id url < <(start "$name")
  wait_first "$url"
  wrk -t1 -c1 -d2s -s bench/post.lua "$url" >/dev/null # warm-up
  out=$(wrk -t1 -c1 -d"$DURATION" --latency -s bench/post.lua "$url")
  p50=$(awk '/Latency Distribution/{f=1} f && $1=="50%"{print $2; exit}' <<<"$out")
  p99=$(awk '/Latency Distribution/{f=1} f && $1=="99%"{print $2; exit}' <<<"$out")
  rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
  read -r rss hwm < <(rss_kb "$id")
  printf '%-14s %10s %10s %10s %9s kB %9s kB %s\n' "$name" "$p50" "$p99" "$rps" "$rss" "$hwm" "$errors"
  docker rm -f "$id" >/dev/null
done

echo
echo "== cold start: docker run to first response (median of $COLD_RUNS; init = the runtime's own Init Duration)"
python3 bench/coldstart.py "$COLD_RUNS" raw -- --entrypoint /bin/true "$TAG"
for name in "${ORDER[@]}"; do
  # shellcheck disable=SC2086
  python3 bench/coldstart.py "$COLD_RUNS" "$name" -- -e AWS_LAMBDA_FUNCTION_TIMEOUT=30 ${RUN[$name]}
done
