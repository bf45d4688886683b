#!/usr/bin/env bash
# Writes synthetic SmolLM2-135M-shape models (random weights, stories260K tokenizer) for
# performance work into .cache/models: f16 from ../shared/tools/synth_gguf.py, then
# q8_0, q4_0 and q4_k_m with llama.cpp's quantizer (built by build_llamacpp.sh); and a
# Qwen3-MoE-shape one (scripts/tools/synth_moe_gguf.py: 8 experts, 2 used, 479 M
# parameters, 138 M active per token) in f16 and q4_0.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${KVSERVE_SHARED_DIR:-../shared}
OUT=.cache/models
mkdir -p "$OUT"
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
F16=$OUT/synth-135m-f16.gguf
if [ ! -s "$F16" ]; then
  "$PY" "$SHARED/tools/synth_gguf.py" "$SHARED/models/stories260K.gguf" "$F16" \
    --dim 576 --layers 30 --heads 9 --kv-heads 3 --ffn 1536 --f16 >&2
fi
BIN=$(bash scripts/build_llamacpp.sh)
for t in q8_0 q4_0 q4_k_m; do
  f=$OUT/synth-135m-$t.gguf
  [ -s "$f" ] || "$BIN/llama-quantize" "$F16" "$f" "$(echo $t | tr a-z A-Z)" >/dev/null 2>&1
done
MOE=$OUT/synth-moe-0.5b-f16.gguf
[ -s "$MOE" ] || "$PY" scripts/tools/synth_moe_gguf.py "$SHARED/models/stories260K.gguf" "$MOE" >&2
[ -s "$OUT/synth-moe-0.5b-q4_0.gguf" ] || "$BIN/llama-quantize" "$MOE" "$OUT/synth-moe-0.5b-q4_0.gguf" Q4_0 >/dev/null 2>&1
ls -la "$OUT"
