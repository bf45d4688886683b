#!/usr/bin/env bash
# Decode deep in a context with each KV-cache dtype, kvserve and llama.cpp side by side.
#
#   scripts/compare_kv_dtypes.sh [-t THREADS] [--depth D] [-r REPEATS] [--out FILE] [MODEL.gguf ...]
#
# Per model: kvserve bench latency -p D -n 64 --tg-after-prompt --kv-cache-dtype T for T in
# f16, int8, fp8, and llama-bench -p 0 -n 64 -d D -fa on with -ctk/-ctv f16 and q8_0 (built by
# scripts/build_llamacpp.sh). Prints tokens/s and ratios (int8 over f16, kvserve over
# llama.cpp at the same KV bytes) and writes the raw figures as JSON to FILE
# (default: .cache/bench/kv_dtypes.json). Default models: the synthetic q4_0 and SmolLM2.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
THREADS=2
DEPTH=4096
REPS=2
OUT=.cache/bench/kv_dtypes.json
MODELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--threads) THREADS=$2; shift ;;
    --depth) DEPTH=$2; shift ;;
    -r) REPS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) MODELS+=("$1") ;;
  esac
  shift
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(.cache/models/synth-135m-q4_0.gguf models/SmolLM2-135M-Instruct.Q4_1.gguf)
KVSERVE=${KVSERVE:-build/kvserve}
BENCH=$(bash scripts/build_llamacpp.sh)/llama-bench  # (builds it the first time)
[ -x "$KVSERVE" ] || { echo "build kvserve first ($KVSERVE)" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads, depth $DEPTH" >&2
for m in "${MODELS[@]}"; do
  name=$(basename "$m" .gguf)
  for t in f16 int8 fp8; do
    echo "kvserve $name $t ..." >&2
    "$KVSERVE" bench latency -m "$m" -p "$DEPTH" -n 64 --tg-after-prompt -r "$REPS" -t "$THREADS" -q \
      --kv-cache-dtype "$t" --json "$TMP/kvserve-$name-$t.json" >/dev/null
  done
  for t in f16 q8_0; do
    echo "llama.cpp $name $t ..." >&2
    "$BENCH" -m "$m" -p 0 -n 64 -d "$DEPTH" -fa on -ctk "$t" -ctv "$t" -t "$THREADS" -r "$REPS" -o json \
      >"$TMP/llamacpp-$name-$t.json" 2>/dev/null
  done
done
python3 - "$TMP" "$OUT" "$DEPTH" "$THREADS" "${MODELS[@]}" <<'PY'
import json, os, sys, platform
tmp, out, depth, threads, models = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = []
print(f"decode at {depth} keys, tg64 tokens/s, {threads} threads, {cpu}")
print(f"{'model':28} {'kv f16':>8} {'kv int8':>8} {'kv fp8':>8} {'int8/f16':>9} {'l.cpp f16':>10} {'l.cpp q8_0':>10} {'int8/l.cpp q8_0':>16}")
for m in models:
    name = os.path.basename(m)[:-5]
    k = {t: json.load(open(f"{tmp}/kvserve-{name}-{t}.json"))["gen_tokens_per_s"]["mean"] for t in ("f16", "int8", "fp8")}
    l = {t: json.load(open(f"{tmp}/llamacpp-{name}-{t}.json"))[0]["avg_ts"] for t in ("f16", "q8_0")}
    print(f"{name:28} {k['f16']:8.1f} {k['int8']:8.1f} {k['fp8']:8.1f} {k['int8']/k['f16']:8.2f}x {l['f16']:10.1f} {l['q8_0']:10.1f} {k['int8']/l['q8_0']:15.2f}x")
    rows.append({"model": m, "kvserve": k, "llamacpp": l})
json.dump({"cpu": cpu, "threads": threads, "depth": depth, "results": rows}, open(out, "w"), indent=2)
PY
