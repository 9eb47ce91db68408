#!/usr/bin/env bash
# Cold start of one function image through the agent's two backends, side by
# side in one run, and a scale-out in containerd mode:
#
#   docker      create->ready, create->first invoke: Docker backend, worker
#               published on a loopback port (as in the Docker backend tests)
#   containerd  the same through the containerd backend, run inside an
#               esb-runtime-node container's network and PID namespaces (as
#               the agent runs in containerd mode), image pulled once from an
#               esb-registry on a throwaway network
#   scale-out   BENCH_SCALE (default 20) containerd workers created at once,
#               each invoked once
#
# create->ready ends when the worker's /health answers 200 (the shim is up;
# the python runtime is initialised on the first invoke, as in Lambda).
# Everything it starts is removed at exit. Workers are contacted only on
# loopback (docker) or inside the node's namespace (containerd).
# Environment: BENCH_ROUNDS (default 10), BENCH_SCALE (default 20),
# ESB_LOG=esb_agent=debug (the time of each step of each containerd create).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-10}
SCALE=${BENCH_SCALE:-20}
NAME=esb-bench-ctd-$$

die() { echo "bench: $*" >&2; exit 1; }
for image in esb-runtime-node esb-registry esb-lambda-python:3.11; do
  docker image inspect "$image" >/dev/null 2>&1 || die "no $image image: run ./dev images"
done

# A debug build: the time measured is containerd's, runc's, Docker's and the
# worker's, not the client's.
cargo build --quiet -p esb-agent --example coldstart
BIN=$ROOT/target/debug/examples/coldstart
work=$(mktemp -d)
cleanup() {
  docker rm -f -v "$NAME-node" "$NAME-registry" >/dev/null 2>&1 || true
  docker volume rm "$NAME-data" "$NAME-run" "$NAME-state" "$NAME-cni" >/dev/null 2>&1 || true
  docker network rm "$NAME" >/dev/null 2>&1 || true
  docker image rm "$NAME:latest" "127.0.0.1:${port:-0}/$NAME:latest" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The function: python 3.11 returning its event.
mkdir -p "$work/fn"
printf 'def handler(event, context):\n    return event\n' >"$work/fn/app.py"
printf 'FROM esb-lambda-python:3.11\nCOPY app.py /var/task/\nCMD ["app.handler"]\n' >"$work/fn/Dockerfile"
DOCKER_BUILDKIT=0 docker build -q -t "$NAME:latest" "$work/fn" >/dev/null

echo "cold start, $ROUNDS rounds each; function esb-lambda-python:3.11, 256 MB"
"$BIN" docker "$NAME:latest" "$ROUNDS"

# containerd: registry (plain HTTP on a throwaway network) and runtime node.
docker network create "$NAME" >/dev/null
docker run -d --name "$NAME-registry" --network "$NAME" --network-alias registry \
  -p 127.0.0.1::5010 esb-registry:latest >/dev/null
port=$(docker port "$NAME-registry" 5010/tcp | head -n1 | sed 's/.*://')
for _ in $(seq 100); do
  docker exec "$NAME-registry" /usr/local/bin/esb-registry-healthcheck >/dev/null 2>&1 && break
  sleep 0.2
done
docker tag "$NAME:latest" "127.0.0.1:$port/$NAME:latest"
docker push -q "127.0.0.1:$port/$NAME:latest" >/dev/null
volumes=(-v "$NAME-data:/var/lib/containerd" -v "$NAME-run:/run/containerd"
  -v "$NAME-state:/var/lib/esb-node" -v "$NAME-cni:/var/lib/cni")
docker run -d --name "$NAME-node" --network "$NAME" \
  --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
  --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
  "${volumes[@]}" esb-runtime-node:latest >/dev/null
for _ in $(seq 150); do
  docker exec "$NAME-node" ctr version >/dev/null 2>&1 && break
  sleep 0.2
done
docker run --rm --network "container:$NAME-node" --pid "container:$NAME-node" \
  --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add SYS_PTRACE "${volumes[@]}" \
  -v "$BIN:/coldstart:ro" -v "$ROOT/images/agent/esb.conflist:/etc/esb/cni/esb.conflist:ro" \
  -e ESB_BENCH_INSECURE_REGISTRY=registry:5010 -e ESB_LOG="${ESB_LOG:-warn}" \
  --entrypoint /coldstart esb-runtime-node:latest \
  containerd "registry:5010/$NAME:latest" "$ROUNDS" "$SCALE"
