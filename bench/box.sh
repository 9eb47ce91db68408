#!/usr/bin/env bash
# Benchmark of the box's life cycle with the `esb` CLI on real Docker Compose,
# side by side in one run, on a copy of examples/sam-app (6 python functions, one of them a container image,
# one bucket, one database):
#
#   build, cold          every function image built (no image of this app yet;
#                        Docker's layer cache and pip's cache as they are)
#   build, no change     nothing to rebuild (hashes only)
#   build, one change    one function's code changed: one image rebuilt
#   up --wait, first     `esb up --wait` of built images: volumes created,
#                        PostgreSQL initialised, buckets and databases provisioned
#   up --wait, again     after `esb down` (volumes kept)
#   first request        the first HTTPS request after `up` (a cold start)
#   down -v              everything removed
#
# Every port is 0 (free ports). Only loopback is contacted.
# Environment: BENCH_RUNS (repetitions of the no-change/one-change builds and
# of up/down, default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUNS=${BENCH_RUNS:-3}
PROJECT=bench-box-$$

die() { echo "bench: $*" >&2; exit 1; }
for image in esb-gateway esb-agent esb-storage esb-postgres esb-lambda-python:3.11; do
  docker image inspect "$image" >/dev/null 2>&1 || die "no $image image: run ./dev images"
done

cargo build --quiet --release -p esb-cli
ESB=$ROOT/target/release/esb
work=$(mktemp -d)
app=$work/bench-box-app
cp -r examples/sam-app "$app"
export ESB_PROJECT=$PROJECT ESB_PIP="${ESB_TEST_PYTHON:-$ROOT/.cache/venv/bin/python3} -m pip"
for v in ESB_PORT_GATEWAY_HTTPS ESB_PORT_GATEWAY_HTTP ESB_PORT_GRPC ESB_PORT_S3 ESB_PORT_DATABASE ESB_PORT_LOGS; do
  export "$v=0"
done
cleanup() {
  (cd "$app" && "$ESB" down -v >/dev/null 2>&1) || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^esb-fn-bench-box-app-' | xargs -r docker rmi -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$app"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f\n", (b - a) * 1000 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() { local t0; t0=$(now); "$@" >/dev/null 2>"$work/last.log" || { cat "$work/last.log" >&2; die "failed: $*"; }; ms "$t0" "$(now)"; }

cold=$(timed "$ESB" build)
nochange=$(for _ in $(seq "$RUNS"); do timed "$ESB" build; done | median)
onechange=$(for i in $(seq "$RUNS"); do
  echo "# change $i" >>hello/app.py
  timed "$ESB" build
done | median)
grep -q '1 rebuilt' "$work/last.log" || die "the one-change build did not rebuild exactly one function: $(cat "$work/last.log")"

first_up=$(timed "$ESB" up --wait)
request() {
  local info url ca t0
  info=$("$ESB" info --json)
  url=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoints"]["gateway"])' <<<"$info")
  ca=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ca_cert"])' <<<"$info")
  t0=$(now)
  curl -sf --cacert "$ca" "$url/hello/bench" >/dev/null || die "the first request failed"
  ms "$t0" "$(now)"
}
first_request=$(request)
again=()
requests=()
for _ in $(seq "$RUNS"); do
  "$ESB" down >/dev/null 2>&1
  again+=("$(timed "$ESB" up --wait)")
  requests+=("$(request)")
done
up_again=$(printf '%s\n' "${again[@]}" | median)
request_again=$(printf '%s\n' "${requests[@]}" | median)
down=$(timed "$ESB" down -v)

printf '\n%-34s %10s\n' "step (examples/sam-app, 6 functions)" "time"
printf '%-34s %8s ms\n' "build, cold (6 images)" "$cold" \
  "build, no change (median of $RUNS)" "$nochange" \
  "build, one function changed" "$onechange" \
  "up --wait, first (fresh volumes)" "$first_up" \
  "first request after first up" "$first_request" \
  "up --wait after down (median)" "$up_again" \
  "first request after up (median)" "$request_again" \
  "down -v" "$down"
