#!/usr/bin/env bash
# Runs the fuzz targets with libFuzzer (cargo-fuzz), SECONDS each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]    default: 60 s, every target
#
# Builds with the toolchain pinned in rust-toolchain.toml, without a
# sanitizer (`-s none`: ESB forbids unsafe code). FUZZ_TOOLCHAIN=nightly
# FUZZ_SANITIZER=address runs under ASan instead; FUZZ_FLAGS adds cargo-fuzz
# flags (e.g. `--debug-assertions` for overflow checks). Installs cargo-fuzz when missing. What a target finds
# is written to fuzz/artifacts/<target>/; reproduce it with
# `cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>`.
# New corpus entries go to fuzz/corpus/<target>/ (ignored by git; the
# committed files there are the seeds).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-60}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 64; }

if ! command -v cargo >/dev/null && [[ -r $HOME/.cargo/env ]]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

cargo=(cargo)
[[ -n ${FUZZ_TOOLCHAIN:-} ]] && cargo+=("+$FUZZ_TOOLCHAIN")
# shellcheck disable=SC2206
flags=(-s "${FUZZ_SANITIZER:-none}" ${FUZZ_FLAGS:-})

export CARGO_INCREMENTAL=0
targets=("$@")
if [[ ${#targets[@]} -eq 1 ]]; then
  "${cargo[@]}" fuzz build "${flags[@]}" "${targets[0]}"
else
  "${cargo[@]}" fuzz build "${flags[@]}"
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <("${cargo[@]}" fuzz list)
fi
failed=()
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s" >&2
  mkdir -p "corpus/$target"
  if ! "${cargo[@]}" fuzz run "${flags[@]}" "$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2> >(grep -v '^#[0-9]' >&2); then
    failed+=("$target")
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ok (${#targets[@]} targets, ${seconds}s each)" >&2
