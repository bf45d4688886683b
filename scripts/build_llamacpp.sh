#!/usr/bin/env bash
# Builds llama.cpp (for side-by-side benchmarks only) from the source distribution of
# PyPI's llama-cpp-python, cached in .cache/llamacpp. Prints the bin directory.
# Nothing of llama.cpp is committed or linked into kvserve.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/llamacpp
BIN=$CACHE/build/bin
TARGETS=${LLAMACPP_TARGETS:-"llama-bench llama-batched-bench llama-server llama-cli llama-quantize"}
if [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-quantize" ] && [ -x "$BIN/llama-server" ]; then
  echo "$BIN"; exit 0
fi
mkdir -p "$CACHE"
PIP=pip3; [ -x .venv/bin/pip ] && PIP=.venv/bin/pip
ls "$CACHE"/llama_cpp_python-*.tar.gz >/dev/null 2>&1 ||
  "$PIP" download -q --no-deps --no-binary :all: llama-cpp-python -d "$CACHE" >&2
sdist=$(ls "$CACHE"/llama_cpp_python-*.tar.gz | head -n 1)
if [ ! -d "$CACHE/src" ]; then
  mkdir -p "$CACHE/src"
  tar -xzf "$sdist" -C "$CACHE/src" --strip-components=1
fi
cmake -S "$CACHE/src/vendor/llama.cpp" -B "$CACHE/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
  -DLLAMA_BUILD_SERVER=ON >&2
# shellcheck disable=SC2086
cmake --build "$CACHE/build" --target $TARGETS >&2
echo "$BIN"
