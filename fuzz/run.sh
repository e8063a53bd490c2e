#!/usr/bin/env bash
# Longer fuzzing runs (opt-in; the normal test run only replays fuzz/corpus/ on stable).
#
#   fuzz/run.sh                      every target, FUZZ_SECONDS (default 600) each
#   fuzz/run.sh connect_framing      only the targets named
#   FUZZ_MERGE=1 fuzz/run.sh         then add the inputs that found new coverage to the
#                                    committed corpus (fuzz/corpus/<target>/)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). With a nightly toolchain installed it is used
# (FUZZ_TOOLCHAIN=stable to skip it); otherwise the stable toolchain builds the targets with
# RUSTC_BOOTSTRAP=1. New inputs go to
# fuzz/work/<target>/ and crashes to fuzz/artifacts/<target>/ (both ignored by git); a crash
# stops the run with the file to reproduce it: `cargo fuzz run <target> <file>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-600}"
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <("${fuzz[@]}" list)
fi

for target in "${targets[@]}"; do
  mkdir -p "work/$target" "corpus/$target"
  echo "== $target: ${seconds}s"
  "${fuzz[@]}" run "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "${fuzz[@]}" run "$target" "corpus/$target" "work/$target" -- -merge=1
  fi
done
