#!/usr/bin/env bash
# Cold start, docker vs containerd, on the same function image: from "run it"
# to the first successful invocation of the shim.
#
#   bench/containerd.sh [RUNS] [SCALE]  (default 10 runs: the median, min
#                                        and max; then SCALE=20 tasks at once)
#
# docker:     `docker run -d -p 127.0.0.1::8080` of the image, polled through
#             the published port (bench/coldstart.py, as bench/runtime.sh does)
# containerd: `ctr run -d --cni` of the same image inside an esb-runtime-node
#             started with the box's options (docker-compose.containerd.yml),
#             on the CNI bridge esb0 (10.88.0.0/16), polled from runtime-node's
#             own network namespace, the only place with a route to the task.
#             The task gets the agent's worker settings: no capabilities,
#             read-only root, a memory limit.
# Both include the runtime's own init (the Python runtime's start), which
# the docker line also reports alone.
# The agent's own path (gRPC, pull, OCI spec) is not in these figures: they
# are the floors each mode builds on.
#
# Needs esb-runtime-node and esb-bench-python (bench/runtime.sh builds it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${1:-10}
SCALE=${2:-20}
TAG=esb-bench-python:latest
NAME=esb-bench-node-$$
DROPS=()
for c in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP \
  NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do
  DROPS+=(--cap-drop "CAP_$c")
done

die() { echo "bench: $*" >&2; exit 1; }
docker image inspect "$TAG" >/dev/null 2>&1 || die "$TAG is missing: run bench/runtime.sh once"
docker image inspect esb-runtime-node:latest >/dev/null 2>&1 || die "esb-runtime-node is missing: run images/build.sh services"

cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm "$NAME-data" >/dev/null 2>&1 || true
  docker network rm "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== docker: docker run to first response (median of $RUNS)"
python3 bench/coldstart.py "$RUNS" docker -- -e AWS_LAMBDA_FUNCTION_TIMEOUT=30 --read-only \
  --tmpfs /tmp --cap-drop ALL --memory 128m "$TAG"

docker network create "$NAME" >/dev/null
docker run -d --name "$NAME" --network "$NAME" --cap-drop ALL \
  --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add CHOWN --cap-add DAC_OVERRIDE \
  --cap-add FOWNER --cap-add FSETID --cap-add MKNOD --cap-add SETFCAP --cap-add SETUID \
  --cap-add SETGID --cap-add NET_BIND_SERVICE --cap-add SYS_CHROOT --cap-add KILL \
  --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
  --sysctl net.ipv4.ip_forward=1 -v "$NAME-data:/var/lib/containerd" \
  esb-runtime-node:latest >/dev/null
for _ in $(seq 50); do docker exec "$NAME" ctr version >/dev/null 2>&1 && break; sleep 0.2; done
docker save "$TAG" | docker exec -i "$NAME" ctr -n esb images import - >/dev/null

# One run inside runtime-node: prints the microseconds to the first 200.
# shellcheck disable=SC2016
once='
set -eu
id=$1; shift
t0=$(date +%s%N)
ctr -n esb run -d --cni --log-uri file:///dev/null --read-only --memory-limit 134217728 \
  --mount type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev \
  --env AWS_LAMBDA_FUNCTION_TIMEOUT=30 "$@" docker.io/library/esb-bench-python:latest "$id" >/dev/null
pid=$(ctr -n esb tasks ls | awk -v id="$id" "\$1 == id { print \$2 }")
ip=$(nsenter -t "$pid" -n ip -4 -o addr show eth0 | awk "{ split(\$4, a, \"/\"); print a[1] }")
body={\"n\":1}
while :; do
  if exec 3<>"/dev/tcp/$ip/8080" 2>/dev/null; then
    printf "POST /2015-03-31/functions/function/invocations HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" ${#body} "$body" >&3
    if read -r -t 30 _ status _ <&3 && [ "$status" = 200 ]; then exec 3<&-; break; fi
    exec 3<&-
  fi
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 60000 ] || { echo "no response within 60 s" >&2; exit 1; }
  sleep 0.002
done
t1=$(date +%s%N)
ctr -n esb tasks kill -s KILL "$id" >/dev/null 2>&1 || true
for _ in $(seq 100); do ctr -n esb tasks ls | grep -q "^$id " || break; ctr -n esb tasks delete "$id" >/dev/null 2>&1 || true; sleep 0.02; done
ctr -n esb containers delete "$id" >/dev/null 2>&1 || true
echo "$(( (t1 - t0) / 1000 ))"
'
echo "== containerd: ctr run --cni to first response (median of $RUNS)"
times=()
docker exec "$NAME" bash -c "$once" _ warm "${DROPS[@]}" >/dev/null
for i in $(seq "$RUNS"); do
  times+=("$(docker exec "$NAME" bash -c "$once" _ "bench-$i" "${DROPS[@]}")")
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$RUNS" '
  { t[NR] = $1 / 1000 }
  END {
    m = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
    printf "%-14s %10.1f ms  (min %.1f, max %.1f; runtime init in the first invocation)\n", "containerd", m, t[1], t[n]
  }'
# Scale-out: SCALE tasks started at once, to every one answering.
# shellcheck disable=SC2016
scale='
set -eu
n=$1; shift
t0=$(date +%s%N)
for i in $(seq "$n"); do
  ctr -n esb run -d --cni --log-uri file:///dev/null --read-only --memory-limit 134217728 \
    --mount type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev \
    --env AWS_LAMBDA_FUNCTION_TIMEOUT=30 "$@" docker.io/library/esb-bench-python:latest "scale-$i" >/dev/null &
done
wait
body={\"n\":1}
for i in $(seq "$n"); do
  pid=$(ctr -n esb tasks ls | awk -v id="scale-$i" "\$1 == id { print \$2 }")
  ip=$(nsenter -t "$pid" -n ip -4 -o addr show eth0 | awk "{ split(\$4, a, \"/\"); print a[1] }")
  until exec 3<>"/dev/tcp/$ip/8080" 2>/dev/null &&
    printf "POST /2015-03-31/functions/function/invocations HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" ${#body} "$body" >&3 &&
    read -r -t 30 _ status _ <&3 && [ "$status" = 200 ]; do
    exec 3<&- 2>/dev/null || true
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 120000 ] || { echo "scale-$i: no response" >&2; exit 1; }
    sleep 0.005
  done
  exec 3<&-
done
t1=$(date +%s%N)
for i in $(seq "$n"); do ctr -n esb tasks kill -s KILL "scale-$i" >/dev/null 2>&1 || true; done
sleep 1
for i in $(seq "$n"); do ctr -n esb tasks delete "scale-$i" >/dev/null 2>&1 || true; ctr -n esb containers delete "scale-$i" >/dev/null 2>&1 || true; done
echo "$(( (t1 - t0) / 1000000 ))"
'
echo "== containerd: $SCALE tasks started at once, to all $SCALE answering"
printf '%-14s %10s ms\n' "scale-out" "$(docker exec "$NAME" bash -c "$scale" _ "$SCALE" "${DROPS[@]}")"

leases=$(docker exec "$NAME" sh -c 'ls /var/lib/cni/networks/esb | grep -c "^10\." || true')
echo "CNI leases left after the runs: $leases (ctr does not release them when a task is deleted; the agent runs CNI DEL)"
