#!/usr/bin/env bash
# Brings up examples/sam-app as a box with the `esb` CLI and calls it the way
# a client does. Needs the images: `./dev example` builds them first.
#
#   esb build             the template's functions -> images, the gateway's config
#   esb up --wait         the box on Docker Compose (gateway, agent, S3, PostgreSQL)
#   curl, esb invoke      a public route, a login, authenticated routes, the Invoke API
#
# The box stays up; `esb down -v` (from examples/sam-app) removes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

cargo build --quiet --release -p esb-cli
ESB=$ROOT/target/release/esb
# requirements.txt is installed on the host with pip, as `sam build` does.
export ESB_PIP=${ESB_PIP:-"$ROOT/.cache/venv/bin/python3 -m pip"}
cd examples/sam-app

say "esb up --wait (builds first when needed)"
"$ESB" up --wait
info=$("$ESB" info --json)
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <<<"$info"; }
GATEWAY=$(field 'd["endpoints"]["gateway"]')
CA=$(field 'd["ca_cert"]')

say "a public route (Auth: NONE)"
echo "curl --cacert $CA $GATEWAY/hello/ESB"
curl -sS --cacert "$CA" "$GATEWAY/hello/ESB"; echo

say "log in, then call authenticated routes"
TOKEN=$(curl -sS --cacert "$CA" -XPOST "$GATEWAY/user/auth/v1" -H "x-api-key: $(field 'd["credentials"]["api_key"]')" \
  -d "{\"AuthParameters\":{\"USERNAME\":\"$(field 'd["credentials"]["user"]')\",\"PASSWORD\":\"$(field 'd["credentials"]["password"]')\"}}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["AuthenticationResult"]["IdToken"])')
auth=(-H "Authorization: Bearer $TOKEN")
curl -sS --cacert "$CA" "${auth[@]}" -XPUT "$GATEWAY/files/notes/hello.txt" -d 'stored in S3 by a function'; echo
curl -sS --cacert "$CA" "${auth[@]}" "$GATEWAY/files/notes/hello.txt"; echo
curl -sS --cacert "$CA" "${auth[@]}" "$GATEWAY/call/friend"; echo
curl -sS --cacert "$CA" "${auth[@]}" -XPOST "$GATEWAY/notes" -d '{"text": "PostgreSQL works"}'; echo
curl -sS --cacert "$CA" "${auth[@]}" "$GATEWAY/notes"; echo
curl -sS --cacert "$CA" "$GATEWAY/greet/image"; echo

say "esb invoke HelloFunction"
"$ESB" invoke HelloFunction --payload '{"name": "invoke"}'

say "esb logs HelloFunction --tail 6"
"$ESB" logs HelloFunction --tail 6

say "the box is up: esb status, esb info, esb logs gateway; esb down -v in examples/sam-app removes it"
