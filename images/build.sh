#!/usr/bin/env bash
# Build ESB's local images without pulling images and without network inside
# any container (DESIGN.md §1, §5).
#
#   images/build.sh [functions] [services]     (both by default)
#
# functions: the base images of function workers
#   esb-os-base:latest            Debian bookworm: debian:bookworm-slim when it is
#                                 (or can be) pulled, else built with mmdebstrap
#   esb-lambda-python:3.11        + python3, ca-certificates, awslambdaric, boto3
#   esb-lambda-provided:al2023    + ca-certificates (also tagged :al2)
#
# services: the box's own services, run by the compose files
#   esb-gateway:latest            FROM scratch + the static musl binary
#   esb-storage:latest            (images/service/Dockerfile, ARG BIN); each
#                                 binary's `healthcheck` is its health check
#   esb-agent:latest              the same + Debian's CNI plugins for its
#                                 containerd backend (images/agent/Dockerfile)
#   esb-postgres:latest           esb-os-base + Debian's postgresql-15
#   esb-registry:latest           esb-os-base + Debian's docker-registry
#   esb-runtime-node:latest       esb-os-base + Debian's containerd, runc, CNI
#                                 plugins, iptables, dnsmasq and tini (the
#                                 workers' init; containerd mode)
#
# Our binaries (the shim in every function image, the services) are built
# with `cargo build --release --target x86_64-unknown-linux-musl`. Debian
# packages and PyPI wheels are downloaded on the host, with the host's own apt
# sources and pip config, into .cache/images/ and copied into the build
# contexts. Each image carries the hash of its inputs as a label and is
# rebuilt only when they change, so re-runs are fast.
#
# Environment:
#   ESB_EXTRA_CA_CERTS  PEM file added to the function images' trust store (optional)
#   ESB_RUNTIME_BIN     static binary used as the shim instead of building
#                       crates/runtime (e.g. for testing images alone)
#   ESB_REFRESH=1       run apt-get update and download the wheels again
#   ESB_REBUILD=1       rebuild every image from scratch (no layer cache)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CACHE=$ROOT/.cache/images
SUITE=bookworm
LABEL=org.esb.input-hash
MUSL_TARGET=x86_64-unknown-linux-musl
SERVICES=(esb-gateway esb-agent esb-storage)

# The legacy builder needs no buildx plugin and never resolves FROM images
# from a registry; the Dockerfiles work with BuildKit too.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

say() { printf 'images: %s\n' "$*"; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
up_to_date() { [[ -z ${ESB_REBUILD:-} && $(image_label "$1" "$LABEL") == "$2" ]]; }

# Hash of every file under a directory (names and contents).
tree_hash() {
  (cd "$1" && find . \( -type f -o -type l \) -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha
}

# Run a step with its output in a log file; show the log's tail on failure.
logged() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "failed: $* (full log: ${log#"$ROOT"/})"
  fi
}

# Tag image $1 with every further argument and drop the image those tags
# pointed at before, if nothing uses it any more.
retag() {
  local id=$1 tag old
  shift
  for tag in "$@"; do
    old=$(image_id "$tag")
    [[ $old == "$id" ]] && continue
    docker tag "$id" "$tag"
    if [[ -n $old ]]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
  done
}

# --- our binaries --------------------------------------------------------------

# Build the shim (for function images, unless ESB_RUNTIME_BIN names one) and
# the services' binaries (for service images). Sets SHIM.
#
# Two cargo runs, always with the same packages each: cargo unifies the
# features of the packages it builds together, so building the shim with the
# services would give another binary (and rebuild the function images).
SHIM=
BIN_DIR=$ROOT/target/$MUSL_TARGET/release
build_binaries() {
  local functions=$1 services=$2
  if ! command -v cargo >/dev/null && [[ -r $HOME/.cargo/env ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  if [[ $functions == 1 ]]; then
    if [[ -n ${ESB_RUNTIME_BIN:-} ]]; then
      [[ -x $ESB_RUNTIME_BIN ]] || die "ESB_RUNTIME_BIN=$ESB_RUNTIME_BIN is not an executable file"
      say "shim: using $ESB_RUNTIME_BIN"
      SHIM=$ESB_RUNTIME_BIN
    else
      cargo_musl esb-runtime
      SHIM=$BIN_DIR/esb-runtime
    fi
  fi
  if [[ $services == 1 ]]; then
    cargo_musl "${SERVICES[@]}"
  fi
}

# cargo build --release of static musl binaries of packages of the same name.
cargo_musl() {
  local name
  say "binaries: cargo build --release --target $MUSL_TARGET$(printf ' -p %s' "$@")"
  cargo build --quiet --release --target "$MUSL_TARGET" "${@/#/--package=}"
  for name; do
    [[ -x $BIN_DIR/$name ]] || die "cargo did not produce $BIN_DIR/$name"
  done
}

# --- apt, with the host's own sources -----------------------------------------

# The host's apt entries for $SUITE (plus -updates and -security), binary
# packages only, copied from its own sources files: no mirror is named here.
write_apt_sources() {
  local dir=$CACHE/apt-sources f
  rm -rf "$dir" && mkdir -p "$dir"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -s $f ]] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; re = "^" suite "(-updates|-security)?$" }
      {
        n = split($0, line, "\n"); deb = 0; ours = 0; on = 1; out = ""
        for (i = 1; i <= n; i++) {
          l = line[i]; key = tolower(l)
          if (l ~ /^#/) continue
          if (key ~ /^types:/) { deb = (l ~ /[: \t]deb([ \t]|$)/); l = "Types: deb" }
          if (key ~ /^enabled:[ \t]*no/) on = 0
          if (key ~ /^suites:/) {
            m = split(substr(l, index(l, ":") + 1), s, /[ \t]+/)
            for (j = 1; j <= m; j++) if (s[j] ~ re) ours = 1
          }
          out = out l "\n"
        }
        if (deb && ours && on) printf "%s\n", out
      }' "$f"
  done >"$dir/host.sources"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -s $f ]] || continue
    awk -v suite="$SUITE" '
      BEGIN { re = "^" suite "(-updates|-security)?$" }
      $1 == "deb" {
        rest = $0; sub(/^[ \t]*deb[ \t]+/, "", rest)
        if (rest ~ /^\[/) rest = substr(rest, index(rest, "]") + 1)
        split(rest, w, " "); if (w[2] ~ re) print
      }' "$f"
  done >"$dir/host.list"
  [[ -s $dir/host.sources || -s $dir/host.list ]] ||
    die "no '$SUITE' entries in the host's apt sources (/etc/apt/sources.list{,.d})"
  for f in "$dir"/host.*; do [[ -s $f ]] || rm -f "$f"; done
  APT_SOURCES=$dir
}

# The host's package lists, fetched once if the host never ran apt-get update.
ensure_apt_lists() {
  if [[ -n ${ESB_REFRESH:-} ]] || ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    say "apt-get update (host)"
    apt-get update -qq
  fi
}

# Download into $CACHE/debs/<name>/ the .debs that `apt-get install
# --no-install-recommends <packages>` would add to esb-os-base. apt resolves
# them inside a throwaway container of the base, with no network and the
# host's lists mounted read-only; the host's apt downloads them.
DEBS=
resolve_debs() {
  local name=$1; shift
  local dir=$CACHE/debs/$name base_id key
  base_id=$(image_id esb-os-base:latest)
  key=$({ echo "$base_id $*"; cat "$APT_SOURCES"/* /var/lib/apt/lists/*Release 2>/dev/null; } | sha)
  DEBS=$dir
  if [[ -f $dir/.key && $(<"$dir/.key") == "$key" ]]; then
    return
  fi
  say "debs for $name: resolving $*"
  local attempt uris pkgs=() f rest
  for attempt in 1 2; do
    uris=$(docker run --rm --network none \
      -v /var/lib/apt/lists:/var/lib/apt/lists:ro \
      -v "$APT_SOURCES":/etc/apt/sources.list.d:ro \
      -v /dev/null:/etc/apt/sources.list:ro \
      esb-os-base:latest \
      apt-get install --print-uris -qq --no-install-recommends "$@") ||
      die "apt could not resolve $* for esb-os-base"
    pkgs=()
    # Lines are: 'URI' name_version_arch.deb size hash (':' in versions as %3a).
    while read -r _ f _; do
      [[ -n ${f:-} ]] || continue
      rest=${f#*_}
      rest=${rest%_*}
      pkgs+=("${f%%_*}=${rest//%3a/:}")
    done <<<"$uris"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    if [[ ${#pkgs[@]} -eq 0 ]] ||
      (cd "$dir.tmp" && apt-get download -qq -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null); then
      break
    fi
    [[ $attempt == 1 ]] || die "apt-get download failed for: ${pkgs[*]}"
    say "debs for $name: download failed, running apt-get update and retrying"
    apt-get update -qq
  done
  [[ $(find "$dir.tmp" -name '*.deb' | wc -l) -eq ${#pkgs[@]} ]] ||
    die "expected ${#pkgs[@]} .debs in ${dir#"$ROOT"/}.tmp"
  echo "$key" >"$dir.tmp/.key"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  say "debs for $name: ${#pkgs[@]} packages, $(du -sh --exclude=.key "$dir" | cut -f1)"
}

# --- PyPI wheels --------------------------------------------------------------

pip_cmd() {
  if [[ -x $ROOT/.cache/venv/bin/pip ]]; then
    echo "$ROOT/.cache/venv/bin/pip"
  else
    echo "python3 -m pip"
  fi
}

# Wheels for CPython $1 on manylinux x86_64, from requirements file $2 plus pip
# itself (the image runs pip from its own wheel). Cached until ESB_REFRESH=1.
WHEELS=
download_wheels() {
  local py=$1 req=$2
  local dir=$CACHE/wheels/python$py key pip
  key=$({ echo "$py"; cat "$req"; } | sha)
  WHEELS=$dir
  if [[ -z ${ESB_REFRESH:-} && -f $dir/.key && $(<"$dir/.key") == "$key" ]]; then
    return
  fi
  say "wheels for python$py: pip download -r ${req#"$ROOT"/} pip"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  pip=$(pip_cmd)
  $pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version "$py" --implementation cp \
    --abi "cp${py/./}" -d "$dir.tmp" -r "$req" pip
  echo "$key" >"$dir.tmp/.key"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  say "wheels for python$py: $(find "$dir" -name '*.whl' | wc -l) wheels, $(du -sh --exclude=.key "$dir" | cut -f1)"
}

# --- images -------------------------------------------------------------------

build_os_base() {
  local tag=esb-os-base:latest slim tar hash id
  slim=$(image_id debian:bookworm-slim)
  if [[ -n $slim ]]; then
    retag "$slim" "$tag"
    say "$tag: debian:bookworm-slim (local)"
    return
  fi
  # shellcheck disable=SC2016 # "$1" is the hook's argument, expanded by mmdebstrap
  local opts=(
    --variant=minbase --format=tar
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    # Docker provides these at run time; do not bake in the host's.
    --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/resolv.conf'
    --aptopt='Acquire::Languages "none"'
    # What debian:*-slim leaves out; kept as dpkg config in the image, so
    # packages installed later leave it out too.
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/groff/*'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
  )
  local sources=("$APT_SOURCES"/host.*)
  hash=$({ echo "${opts[*]} $SUITE"; cat "${sources[@]}"; } | sha)
  if up_to_date "$tag" "$hash"; then
    say "$tag: up to date (mmdebstrap)"
    return
  fi
  if timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    retag "$(image_id debian:bookworm-slim)" "$tag"
    say "$tag: debian:bookworm-slim (pulled)"
    return
  fi
  say "$tag: debian:bookworm-slim cannot be pulled; building with mmdebstrap"
  local t0=$SECONDS
  mkdir -p "$CACHE/os-base"
  tar=$CACHE/os-base/rootfs.tar
  logged "$CACHE/os-base/mmdebstrap.log" mmdebstrap "${opts[@]}" "$SUITE" "$tar" "${sources[@]}"
  id=$(docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --change "LABEL $LABEL=$hash" \
    "$tar")
  rm -f "$tar"
  retag "$id" "$tag"
  say "$tag: imported in $((SECONDS - t0))s"
}

# build_image <dir under images/> [option]... <tag>...
# Builds images/<dir>/Dockerfile from a generated context: the directory's
# files plus what the options add. The first tag names the context and log;
# every tag is applied.
#   --debs DIR         the .debs in DIR, as debs/
#   --wheels DIR       the wheels in DIR, as wheels/
#   --extra-ca         extra-ca/, with ESB_EXTRA_CA_CERTS if set
#   --shim             the runtime shim, as esb-runtime
#   --file PATH=NAME   the file PATH, as NAME
#   --arg NAME=VALUE   a build argument
# The input hash covers the context, the build arguments and, when the
# Dockerfile builds on it, esb-os-base.
build_image() {
  local name=$1
  shift
  local debs='' wheels='' extra_ca='' shim='' files=() args=() f
  while [[ $1 == --* ]]; do
    case $1 in
      --debs) debs=$2 && shift 2 ;;
      --wheels) wheels=$2 && shift 2 ;;
      --extra-ca) extra_ca=1 && shift ;;
      --shim) shim=1 && shift ;;
      --file) files+=("$2") && shift 2 ;;
      --arg) args+=(--build-arg "$2") && shift 2 ;;
      *) die "build_image: unknown option $1" ;;
    esac
  done
  local tag=$1 key=${1%%:*} ctx hash log old id t0=$SECONDS
  ctx=$CACHE/ctx/$key
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -r "$ROOT/images/$name/." "$ctx/"
  if [[ -n $debs ]]; then
    mkdir -p "$ctx/debs"
    cp -l "$debs"/*.deb "$ctx/debs/" 2>/dev/null || cp "$debs"/*.deb "$ctx/debs/" 2>/dev/null || true
  fi
  if [[ -n $wheels ]]; then
    mkdir -p "$ctx/wheels"
    cp -l "$wheels"/*.whl "$ctx/wheels/" 2>/dev/null || cp "$wheels"/*.whl "$ctx/wheels/"
  fi
  if [[ -n $extra_ca ]]; then
    mkdir -p "$ctx/extra-ca"
    if [[ -n ${ESB_EXTRA_CA_CERTS:-} ]]; then
      [[ -r $ESB_EXTRA_CA_CERTS ]] || die "ESB_EXTRA_CA_CERTS=$ESB_EXTRA_CA_CERTS is not readable"
      cp "$ESB_EXTRA_CA_CERTS" "$ctx/extra-ca/esb-extra-ca.crt"
    fi
  fi
  if [[ -n $shim ]]; then
    cp "$SHIM" "$ctx/esb-runtime"
  fi
  for f in "${files[@]}"; do
    cp "${f%=*}" "$ctx/${f##*=}"
  done
  hash=$({
    if grep -q esb-os-base "$ctx/Dockerfile"; then image_id esb-os-base:latest; fi
    if [[ ${#args[@]} -gt 0 ]]; then printf '%s\n' "${args[@]}"; fi
    tree_hash "$ctx"
  } | sha)
  if up_to_date "$tag" "$hash"; then
    retag "$(image_id "$tag")" "$@"
    say "$tag: up to date"
    return
  fi
  say "$tag: building"
  log=$CACHE/logs/$key.log
  mkdir -p "$CACHE/logs"
  old=$(image_id "$tag")
  logged "$log" docker build --force-rm --network none ${ESB_REBUILD:+--no-cache} \
    "${args[@]}" --label "$LABEL=$hash" -t "$tag" "$ctx"
  id=$(image_id "$tag")
  retag "$id" "$@"
  if [[ -n $old && $old != "$id" ]]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
  say "$tag: built in $((SECONDS - t0))s ($(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B)"
}

usage() {
  sed -n '5s/^# *//p' "$0" >&2
  exit 64
}

main() {
  local functions=0 services=0 arg bin t0=$SECONDS
  [[ $# -gt 0 ]] || set -- functions services
  for arg; do
    case $arg in
      functions) functions=1 ;;
      services) services=1 ;;
      *) usage ;;
    esac
  done
  command -v docker >/dev/null || die "docker not found (run scripts/install-deps)"
  docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (run scripts/install-deps)"
  build_binaries "$functions" "$services"
  write_apt_sources
  ensure_apt_lists
  build_os_base

  if [[ $functions == 1 ]]; then
    resolve_debs python3 python3 ca-certificates
    local py_debs=$DEBS
    download_wheels 3.11 "$ROOT/images/lambda-python/requirements.txt"
    build_image lambda-python --debs "$py_debs" --wheels "$WHEELS" --extra-ca --shim \
      esb-lambda-python:3.11 esb-lambda-python:latest

    resolve_debs ca-certificates ca-certificates
    build_image lambda-provided --debs "$DEBS" --extra-ca --shim \
      esb-lambda-provided:al2023 esb-lambda-provided:al2 esb-lambda-provided:latest
  fi

  if [[ $services == 1 ]]; then
    for bin in esb-gateway esb-storage; do
      build_image service --file "$BIN_DIR/$bin=$bin" --arg "BIN=$bin" "$bin:latest"
    done
    # The agent also carries the CNI plugins of its containerd backend.
    resolve_debs cni containernetworking-plugins
    build_image agent --debs "$DEBS" --file "$BIN_DIR/esb-agent=esb-agent" esb-agent:latest
    resolve_debs postgres postgresql-15
    build_image postgres --debs "$DEBS" esb-postgres:latest
    resolve_debs registry docker-registry
    build_image registry --debs "$DEBS" esb-registry:latest
    resolve_debs runtime-node containerd runc containernetworking-plugins iptables \
      dnsmasq-base iproute2 procps tini
    build_image runtime-node --debs "$DEBS" esb-runtime-node:latest
  fi

  say "done in $((SECONDS - t0))s"
}

main "$@"
