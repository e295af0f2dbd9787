#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works with the stable toolchain: the
# targets are built with `--sanitizer none` (libFuzzer's coverage instrumentation uses only
# stable -C flags) and debug assertions on, so overflows and failed assertions are crashes too.
# AddressSanitizer needs -Zsanitizer, i.e. a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable):
# set FUZZ_SANITIZER=address to use it. Never part of CI.
#
# Each target runs from the committed seeds (fuzz/corpus/TARGET, read-only here) plus a working
# corpus (fuzz/work/TARGET, git-ignored) that keeps what the fuzzer learns between runs. A crash
# leaves its input in fuzz/artifacts/TARGET/ and makes this script exit 1; reproduce it with
# `cargo fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-...`, then add a regression test
# to the normal suite. Limits per input: -timeout (s), -rss_limit_mb and -malloc_limit_mb; a
# slow input or a big allocation is a failure like a panic.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
ALL=(config_load path_template body_extract jwt spool_reader admin_params)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
SANITIZER=${FUZZ_SANITIZER:-none}
REPORT=${FUZZ_REPORT:-target/fuzz-report.txt}

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 2; }
if [ "$SANITIZER" != none ] && ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1   # -Zsanitizer on a stable compiler
fi

echo "==> build (sanitizer: $SANITIZER)"
cargo fuzz build -s "$SANITIZER" -a

mkdir -p "$(dirname "$REPORT")"
: >"$REPORT"
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  echo "==> $t for ${SECONDS_PER_TARGET}s"
  log="target/fuzz-$t.log"
  set +e
  # The binary built above, run directly: `cargo fuzz run` would rebuild whenever the tree changed.
  "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "fuzz/work/$t" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -max_len=65536 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  # spool_reader's scratch directories (one per fuzzer process).
  rm -rf /dev/shm/authtrail-fuzz-spool-* "${TMPDIR:-/tmp}"/authtrail-fuzz-spool-*
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
  corpus=$(find "fuzz/work/$t" -type f | wc -l)
  if [ $rc -eq 0 ]; then verdict=ok; else verdict="FAILED (exit $rc, see $log and fuzz/artifacts/$t)"; failed=1; fi
  printf '%-14s %6ss %12s runs  cov %-6s corpus %-6s %s\n' "$t" "$SECONDS_PER_TARGET" "$runs" "${cov:-?}" "$corpus" "$verdict" | tee -a "$REPORT"
done
echo "==> summary in $REPORT"
exit $failed
