#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
#   tests/run.sh                 # RelWithDebInfo build in build/
#   SANITIZE=1 tests/run.sh      # ASan + UBSan build in build-asan/
#   tests/run.sh -L unit         # extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh

if [ "${SANITIZE:-0}" = "1" ]; then
    build=${BUILD_DIR:-build-asan}
    flags=(-DEVBUS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
    # Leak checks stay on; abort on the first error so ctest sees a failure.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
    build=${BUILD_DIR:-build}
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build" "${flags[@]}"
cmake --build "$build" -j "$jobs"
cd "$build"
ctest --output-on-failure -j "$jobs" "$@"
