#!/usr/bin/env bash
# Storage benchmark: PUT/GET throughput of 1 KB, 1 MB and 64 MB objects with
# boto3 against ESB's esb-storage, moto_server (PyPI moto[server]) and the
# raw disk, side by side in one run. Only loopback is contacted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.cache/venv
[[ -x $VENV/bin/python3 ]] || { echo "bench: run scripts/install-deps first" >&2; exit 1; }
"$VENV/bin/python3" -c 'import moto.server' 2>/dev/null ||
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'

work=$(mktemp -d)
pids=()
trap '((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --quiet --release --target x86_64-unknown-linux-musl -p esb-storage
mkdir -p "$work/esb" "$work/raw"
ESB=$(port) MOTO=$(port)
ESB_STORAGE_ADDR=127.0.0.1:$ESB ESB_STORAGE_DIR=$work/esb ESB_S3_ACCESS_KEY_ID=benchkey \
  ESB_S3_SECRET_ACCESS_KEY=benchsecret0123456789 ESB_LOG=warn \
  target/x86_64-unknown-linux-musl/release/esb-storage 2>"$work/esb.log" &
pids+=($!)
"$VENV/bin/python3" -m moto.server -H 127.0.0.1 -p "$MOTO" >"$work/moto.log" 2>&1 &
pids+=($!)
for url in "http://127.0.0.1:$ESB/_esb/health" "http://127.0.0.1:$MOTO/moto-api/"; do
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
done
echo "== boto3 PUT/GET, one object at a time (raw disk: the same bytes written and read as files)"
"$VENV/bin/python3" bench/storage.py "$work/raw" "http://127.0.0.1:$ESB" "http://127.0.0.1:$MOTO"
