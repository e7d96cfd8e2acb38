#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that takes outside bytes (docs/fuzzing.md).
# Builds veil-fuzz with libFuzzer and AddressSanitizer (its own build directory), seeds each
# target's corpus, runs each target for FUZZ_SECONDS (default 20) and prints executions per
# second and in total. Any crash, sanitizer report, leak or timeout fails the run; the input is
# kept as .build/fuzz/findings/TARGET/crash-… — add it to Tests/Fuzz/regressions/TARGET/.
#   FUZZ_SECONDS=600 Tests/Scripts/fuzz.sh json manifest     longer, some targets only
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
export VEIL_TESTDATA=${VEIL_TESTDATA:-$PWD/../shared/testdata/attestation}

swift build --product veil-fuzz >/dev/null
TOOL=$(swift build --show-bin-path)/veil-fuzz
echo "== building the libFuzzer + AddressSanitizer binary"
swift build --product veil-fuzz --build-path .build/fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DVEIL_FUZZ -Xswiftc -use-ld=lld 2>&1 | grep -E "error|warning: unre|Compiling veil|Build" || true
FUZZER=.build/fuzz/debug/veil-fuzz
[ -x "$FUZZER" ] || { echo "the fuzzing build failed"; exit 1; }

WORK=.build/fuzz/run
rm -rf "$WORK" && mkdir -p "$WORK"
"$TOOL" seeds "$WORK/seeds" >/dev/null
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <("$TOOL" list)

failed=()
printf '%-22s %10s %12s %8s %s\n' target exec/s executions corpus result
for target in "${TARGETS[@]}"; do
  corpus=.build/fuzz/corpus/$target findings=.build/fuzz/findings/$target
  mkdir -p "$corpus" "$findings"
  log=$WORK/$target.log
  inputs=("$corpus" "$WORK/seeds/$target")
  [ -d "Tests/Fuzz/regressions/$target" ] && inputs+=("Tests/Fuzz/regressions/$target")
  # protected-file: libFuzzer sees allocation counts change on nearly every input (AES-GCM in
  # swift-crypto) and re-runs each under LeakSanitizer: ~10 instead of ~2,200 inputs a second.
  # Memory errors and crashes are still caught there; leaks are checked on every other target.
  leaks=1; [ "$target" = protected-file ] && leaks=0
  status=0
  VEIL_FUZZ_TARGET=$target ASAN_OPTIONS=detect_leaks=$leaks LSAN_OPTIONS=suppressions=$PWD/Tests/Fuzz/lsan.supp "$FUZZER" "${inputs[@]}" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=3072 -max_len=262144 -print_final_stats=1 -detect_leaks=$leaks \
    -artifact_prefix="$findings/" >"$log" 2>&1 || status=$?
  rate=$(grep -o 'average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo -)
  runs=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || echo -)
  size=$(find "$corpus" -type f | wc -l)
  if [ "$status" = 0 ]; then result=ok; else result="FAILED (exit $status)"; failed+=("$target"); fi
  printf '%-22s %10s %12s %8s %s\n' "$target" "$rate" "$runs" "$size" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "== $target"; grep -E "ERROR|SUMMARY|Test unit written|panic|Fatal error|crashed" "$WORK/$target.log" | head -20
  done
  exit 1
fi
echo "fuzzing: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET} s each, no findings"
