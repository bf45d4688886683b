#!/usr/bin/env bash
# Regenerates tests/model/golden/<name>.jsonl: llama.cpp's logits for the synthetic
# Phi-3, Mixtral and Qwen3-MoE models of tests/model/synth_arch_models.h (teacher-forced
# greedy steps after three prompts). Needs the kvserve build (for synth_arch_writer) and
# builds llama.cpp with scripts/build_llamacpp.sh. Not run by the tests: they read the
# committed files.
#   scripts/make_synth_golden.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
STEPS=12
cmake --build "$BUILD" --target synth_arch_writer >&2
BIN=$(scripts/build_llamacpp.sh)
LLAMA=.cache/llamacpp/src/vendor/llama.cpp
WORK=.cache/synth-golden
mkdir -p "$WORK" tests/model/golden
g++ -O2 -std=c++17 scripts/tools/llamacpp_golden.cpp -I"$LLAMA/include" -I"$LLAMA/ggml/include" \
  -L"$BIN" -lllama -lggml -lggml-base -Wl,-rpath,"$(cd "$BIN" && pwd)" -o "$WORK/llamacpp_golden"
for model in $("$BUILD/tests/synth_arch_writer" "$WORK"); do
  name=$(basename "$model" .gguf)
  "$WORK/llamacpp_golden" "$model" "$WORK/$name.prompts" "$STEPS" 2>"$WORK/$name.log" \
    > "tests/model/golden/$name.jsonl"
  echo "tests/model/golden/$name.jsonl ($(wc -l < "tests/model/golden/$name.jsonl") prompts)"
done
