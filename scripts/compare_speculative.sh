#!/usr/bin/env bash
# Speculative decoding, side by side: for each input-grounded prompt (code edit, copying,
# answer from a document), one stream, greedy, the same number of generated tokens:
#   kvserve generate                                   (no speculation)
#   kvserve generate --speculative-method ngram       (n-gram / prompt lookup)
#   llama-lookup --spec-draft-n-max K                  (llama.cpp's prompt lookup)
# and prints decode tokens/s, the ratios and acceptance; writes OUT/speculative.json.
#
#   scripts/compare_speculative.sh [-m MODEL] [-t THREADS] [-n TOKENS] [-k K] [--repeats R]
#                                  [--prompts FILE] [--out DIR]
# Prompts: texts separated by lines "---" (default bench/prompts/grounded_chatml.txt, ChatML
# for SmolLM2-135M-Instruct). llama.cpp comes from scripts/build_llamacpp.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=2
TOKENS=256
K=4
REPEATS=3
PROMPTS=bench/prompts/grounded_chatml.txt
OUT=.cache/bench/speculative
while [ $# -gt 0 ]; do
  case "$1" in
    -m) MODEL=$2; shift ;;
    -t) THREADS=$2; shift ;;
    -n) TOKENS=$2; shift ;;
    -k) K=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --prompts) PROMPTS=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
KVSERVE=${KVSERVE:-build/kvserve}
LLAMA=$(LLAMACPP_TARGETS="llama-lookup" bash scripts/build_llamacpp.sh)
mkdir -p "$OUT"
python3 - "$MODEL" "$THREADS" "$TOKENS" "$K" "$REPEATS" "$PROMPTS" "$OUT" "$KVSERVE" "$LLAMA" <<'PY'
import json, os, re, subprocess, sys, platform
model, threads, tokens, k, repeats, prompts, out, kvserve, llama = sys.argv[1:]
threads, tokens, k, repeats = int(threads), int(tokens), int(k), int(repeats)
texts = [t.strip("\n") + "\n" for t in open(prompts).read().split("\n---\n") if t.strip()]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")

def kv(path, spec):
    cmd = [kvserve, "generate", "-m", model, "--prompt-file", path, "-n", str(tokens), "--ignore-eos",
           "--temperature", "0", "-t", str(threads), "--json"]
    if spec:
        cmd += ["--speculative-method", "ngram", "--num-speculative-tokens", str(k)]
    j = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return j["generated_tokens_per_second"], j.get("speculative", {}), j["tokens"]

def lookup(path):
    cmd = [f"{llama}/llama-lookup", "-m", model, "-f", path, "-n", str(tokens), "--temp", "0", "-t", str(threads),
           "-c", "2048", "--spec-draft-n-max", str(k)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    log = r.stdout + r.stderr
    m = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", log)
    acc = re.search(r"accept\s+=\s+([\d.]+)%", log)
    if not m:
        raise SystemExit("llama-lookup failed:\n" + log[-2000:])
    return float(m.group(3)), float(acc.group(1)) / 100 if acc else None, int(m.group(1))

rows = []
for i, text in enumerate(texts):
    path = os.path.join(out, f"prompt{i}.txt")
    open(path, "w").write(text)
    best = {"plain": 0.0, "ngram": 0.0, "lookup": 0.0}
    for rep in range(repeats):
        tp, _, toks_plain = kv(path, False)
        ts, spec, toks_spec = kv(path, True)
        if toks_plain != toks_spec:
            raise SystemExit(f"prompt {i}: speculation changed the greedy output (a bug)")
        tl, acc_l, n_l = lookup(path)
        best = {"plain": max(best["plain"], tp), "ngram": max(best["ngram"], ts), "lookup": max(best["lookup"], tl)}
        print(f"prompt {i} run {rep}: plain {tp:.1f}, ngram {ts:.1f} t/s, llama-lookup {tl:.1f} t/s", file=sys.stderr)
    rows.append({"prompt": i, "kvserve_tps": best["plain"], "kvserve_ngram_tps": best["ngram"],
                 "llama_lookup_tps": best["lookup"], "speedup": best["ngram"] / best["plain"],
                 "vs_llama_lookup": best["ngram"] / best["lookup"],
                 "kvserve_acceptance": spec.get("acceptance_rate"), "kvserve_mean_accepted_length": spec.get("mean_accepted_length"),
                 "llama_lookup_acceptance": acc_l, "llama_lookup_tokens": n_l})
print(f"CPU: {cpu}; {threads} threads; {model}; {tokens} tokens, greedy, k={k}; best of {repeats}")
print("| prompt | kvserve t/s | kvserve ngram t/s | speedup | llama-lookup t/s | ngram / llama-lookup | acceptance kvserve / llama |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['prompt']} | {r['kvserve_tps']:.1f} | {r['kvserve_ngram_tps']:.1f} | {r['speedup']:.2f}x | "
          f"{r['llama_lookup_tps']:.1f} | {r['vs_llama_lookup']:.2f}x | {r['kvserve_acceptance']:.2f} / {r['llama_lookup_acceptance']:.2f} |")
json.dump({"cpu": cpu, "threads": threads, "model": model, "tokens": tokens, "k": k, "rows": rows},
          open(os.path.join(out, "speculative.json"), "w"), indent=1)
PY
