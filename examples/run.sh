#!/usr/bin/env bash
# Builds the example functions into images on ESB's base images, then:
#  1. runs each as a worker container on loopback and invokes it the way AWS's
#     RIE is invoked;
#  2. runs the gateway and an agent (Docker backend) on loopback with a
#     catalog of routes to both functions, logs in, and calls the routes
#     over HTTPS the way API Gateway is called.
# (From the CLI issue on, `esb build` and `esb up` do this from a SAM
# template.) Needs the base images: `./dev example` builds them first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

containers=()
pids=()
ctx=$(mktemp -d)
STACK=example-$$
cleanup() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null && wait "${pids[@]}" 2>/dev/null
  ((${#containers[@]})) && docker rm -f "${containers[@]}" >/dev/null 2>&1
  docker ps -aq --filter "label=esb.stack=$STACK" | xargs -r docker rm -f >/dev/null
  rm -rf "$ctx"
}
trap cleanup EXIT

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

say "starting the gateway and an agent (logs in $ctx)"
cargo build --quiet --release --target x86_64-unknown-linux-musl -p esb-gateway -p esb-agent
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$ctx/key.pem" -out "$ctx/cert.pem" 2>/dev/null
cat >"$ctx/gateway.json" <<JSON
{"version": 1,
 "functions": [
   {"name": "hello-python", "image": "esb-example-hello-python", "memory_mb": 128, "timeout_seconds": 3},
   {"name": "hello-rust", "image": "esb-example-hello-rust", "memory_mb": 128, "timeout_seconds": 3}],
 "routes": [
   {"method": "GET", "path": "/hello/{name}", "function": "hello-python", "payload": "rest_v1"},
   {"method": "GET", "path": "/public/rust/{name}", "function": "hello-rust", "payload": "rest_v1", "auth": "none"}]}
JSON
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTPS=$(port) HTTP=$(port) GRPC=$(port)
ESB_CATALOG=$ctx/gateway.json ESB_HTTPS_ADDR=127.0.0.1:$HTTPS ESB_HTTP_ADDR=127.0.0.1:$HTTP \
  ESB_GRPC_ADDR=127.0.0.1:$GRPC ESB_TLS_CERT=$ctx/cert.pem ESB_TLS_KEY=$ctx/key.pem \
  ESB_AUTH_PASSWORD=example-password ESB_API_KEY=example-api-key-0123456789 \
  ESB_JWT_SECRET=example-jwt-secret-0123456789abcdef012 \
  target/x86_64-unknown-linux-musl/release/esb-gateway 2>"$ctx/gateway.log" &
pids+=($!)
ESB_GATEWAY_URL=http://127.0.0.1:$GRPC ESB_NODE_ID=$STACK ESB_STACK=$STACK \
  ESB_WORKER_ADDRESS_MODE=loopback ESB_AGENT_METRICS_ADDR=127.0.0.1:$(port) \
  target/x86_64-unknown-linux-musl/release/esb-agent 2>"$ctx/agent.log" &
pids+=($!)
gw=https://localhost:$HTTPS
for _ in $(seq 1 100); do
  curl -sf --cacert "$ctx/cert.pem" "$gw/health" | grep -q '"nodes":1' && break
  sleep 0.1
done

say "log in: curl -XPOST $gw/user/auth/v1 -H 'x-api-key: ...' -d '{\"AuthParameters\":{...}}'"
token=$(curl -sS --cacert "$ctx/cert.pem" -XPOST "$gw/user/auth/v1" -H 'x-api-key: example-api-key-0123456789' \
  -d '{"AuthParameters":{"USERNAME":"admin","PASSWORD":"example-password"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["AuthenticationResult"]["IdToken"])')
echo "IdToken: ${token:0:24}..."

say "a route with auth: curl $gw/hello/ESB -H 'Authorization: Bearer <IdToken>'"
curl -sS --cacert "$ctx/cert.pem" -i "$gw/hello/ESB" -H "Authorization: Bearer $token" | tr -d '\r' |
  grep -iE '^(HTTP|x-amzn-requestid|content-type)|^\{'
say "without a token: curl $gw/hello/ESB"
curl -sS --cacert "$ctx/cert.pem" -w ' (HTTP %{http_code})\n' "$gw/hello/ESB"
say "a public route (Auth: NONE): curl $gw/public/rust/ESB"
curl -sS --cacert "$ctx/cert.pem" -w ' (HTTP %{http_code})\n' "$gw/public/rust/ESB"
say "what the gateway runs: curl $gw/admin/v1/pools -H 'Authorization: Bearer <IdToken>'"
curl -sS --cacert "$ctx/cert.pem" "$gw/admin/v1/pools" -H "Authorization: Bearer $token"
echo
