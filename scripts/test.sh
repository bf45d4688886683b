#!/usr/bin/env bash
# Sets everything up (see setup.sh), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ctest"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 600

# Fuzzing the GGUF reader: a second build (clang, libFuzzer, ASan + UBSan) of only the
# fuzz target; its tests run every seed of a corpus made from shared/ (truncated and
# corrupted files) and then fuzz for 20 seconds.
echo "==> fuzz (build-fuzz)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_FUZZ=ON \
  -DKVSERVE_SANITIZE=ON -DKVSERVE_TESTS=OFF -DKVSERVE_BENCH=OFF >/dev/null
cmake --build build-fuzz --target gguf_fuzz
ctest --test-dir build-fuzz/tests/fuzz --output-on-failure --timeout 600
