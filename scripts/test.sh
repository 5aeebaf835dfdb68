#!/usr/bin/env bash
# Runs every predbridge test: installs dependencies, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer, runs unit and integration tests (real mTLS broker) through ctest,
# then runs predbridged under valgrind in a build without sanitizers. Non-zero exit on any failure.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
build=${PB_BUILD_DIR:-$repo/build/asan}
jobs=$(nproc 2>/dev/null || echo 2)

"$repo/scripts/setup.sh"

echo "test: configuring $build (AddressSanitizer + UndefinedBehaviorSanitizer)"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPB_SANITIZE=ON >/dev/null
echo "test: building"
cmake --build "$build" -j "$jobs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "test: running unit and integration tests"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"

if [ $# -eq 0 ]; then
  plain=${PB_PLAIN_BUILD_DIR:-$repo/build/plain}
  echo "test: building $plain (no sanitizers) for the valgrind pass"
  cmake -S "$repo" -B "$plain" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPB_SANITIZE=OFF >/dev/null
  cmake --build "$plain" -j "$jobs"
  echo "test: predbridged under valgrind"
  ctest --test-dir "$plain" --output-on-failure -L valgrind
fi
