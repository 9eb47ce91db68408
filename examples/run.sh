#!/usr/bin/env bash
# Builds the example functions into images on ESB's base images, runs each
# as a worker container on loopback, and invokes it the way the gateway and
# AWS's RIE are invoked. (From the CLI issue on, `esb up` runs a whole SAM
# app instead.) Needs the base images: `./dev example` builds them first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

containers=()
ctx=$(mktemp -d)
trap '((${#containers[@]})) && docker rm -f "${containers[@]}" >/dev/null 2>&1; rm -rf "$ctx"' EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
build() { # tag context; the classic builder needs no buildx plugin
  DOCKER_BUILDKIT=0 docker build -q -t "$1" "$2" >/dev/null 2>"$ctx/build.log" || { cat "$ctx/build.log" >&2; exit 1; }
}

say "building the examples"
cargo build --quiet --release --target x86_64-unknown-linux-musl -p hello-rust
mkdir "$ctx/rust"
cp target/x86_64-unknown-linux-musl/release/bootstrap examples/hello-rust/Dockerfile "$ctx/rust/"
build esb-example-hello-rust "$ctx/rust"
build esb-example-hello-python examples/hello-python
echo "images: esb-example-hello-python, esb-example-hello-rust"

for fn in hello-python hello-rust; do
  id=$(docker run -d --read-only --tmpfs /tmp --cap-drop ALL --memory 128m --user 993:993 \
    -e AWS_LAMBDA_FUNCTION_NAME="$fn" -p 127.0.0.1::8080 "esb-example-$fn")
  containers+=("$id")
  url="http://$(docker port "$id" 8080/tcp | head -n1)"
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$url/health" && break; sleep 0.05; done

  say "$fn: curl -XPOST $url/2015-03-31/functions/function/invocations -d '{\"name\":\"ESB\"}'"
  curl -sS -XPOST "$url/2015-03-31/functions/function/invocations" -d '{"name":"ESB"}'
  echo
  say "$fn: the same with X-Amz-Log-Type: Tail (the X-Amz-Log-Result header, decoded)"
  curl -sS -D - -o /dev/null -XPOST -H 'X-Amz-Log-Type: Tail' \
    "$url/2015-03-31/functions/function/invocations" -d '{"name":"logs"}' |
    awk -F': ' 'tolower($1)=="x-amz-log-result"{print $2}' | tr -d '\r' | base64 -d
done
