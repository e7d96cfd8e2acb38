#!/usr/bin/env bash
# README's test command, and what .ci/run runs: installs what the tests need, builds, runs the
# unit suites and the end-to-end suite as separate `swift test` runs, then the bounded fuzzing
# run; prints the time of each phase. docs/testing.md: what each suite needs, how to run a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH:/usr/sbin:/sbin

times=()
phase() {
  local name=$1; shift
  printf '\n=== %s: %s\n' "$name" "$*"
  local start=$SECONDS
  "$@"
  times+=("$(printf '%-18s %5d s' "$name" $((SECONDS - start)))")
}
report() {
  printf '\n=== phase times\n'
  printf '%s\n' "${times[@]}"
}
trap report EXIT

phase install bash scripts/install-deps.sh test
phase build swift build --build-tests
phase unit swift test --skip-build --skip VeilEndToEndTests
# The end-to-end suite on one cooperative thread: a test that blocks it instead of awaiting
# would stall every other test, so starvation shows up here as a failure, not as luck.
phase end-to-end env LIBDISPATCH_COOPERATIVE_POOL_STRICT=1 swift test --skip-build --filter VeilEndToEndTests
phase fuzzing Tests/Scripts/fuzz.sh
