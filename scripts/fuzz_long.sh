#!/usr/bin/env bash
# Long fuzzing runs: every fuzz target (or those named) for SECONDS each, from the seed
# corpora CI uses, with a random seed; then a table and OUT/summary.json of executions,
# exec/s, corpus growth and findings (libFuzzer's crash-/leak-/timeout-/oom- files, kept in
# OUT with the log of each run). CI runs each target briefly (scripts/test.sh); this is the
# search beyond that, by hand or on a spare machine.
#
#   scripts/fuzz_long.sh [-t SECONDS] [--out DIR] [TARGET ...]
#     TARGET: gguf_fuzz model_fuzz jinja_fuzz openai_fuzz tokenizer_fuzz (default: all)
#     -t: seconds per target (default 3600); --out: default .cache/fuzz-long/<UTC time>
#
# Builds build-fuzz (clang, libFuzzer, ASan + UBSan) as scripts/test.sh does if needed.
# Exit status: 1 if any run found something, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=3600
OUT=".cache/fuzz-long/$(date -u +%Y%m%dT%H%M%SZ)"
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) SECONDS_PER=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf_fuzz model_fuzz jinja_fuzz openai_fuzz tokenizer_fuzz)
SHARED=${KVSERVE_SHARED_DIR:-$(cd .. && pwd)/shared}
B=build-fuzz
F=$B/tests/fuzz

# The corpus folder and input size cap of each target: those of tests/fuzz/CMakeLists.txt.
declare -A CORPUS=([gguf_fuzz]=corpus [model_fuzz]=model_corpus [jinja_fuzz]=jinja_corpus
                   [openai_fuzz]=openai_corpus [tokenizer_fuzz]=tokenizer_corpus)
declare -A MAX_LEN=([gguf_fuzz]=65536 [model_fuzz]=2097152 [jinja_fuzz]=8192 [openai_fuzz]=4096
                    [tokenizer_fuzz]=1024)
for t in "${TARGETS[@]}"; do
  [ -n "${CORPUS[$t]:-}" ] || { echo "unknown target $t (one of ${!CORPUS[*]})" >&2; exit 2; }
done

if [ ! -f $B/build.ninja ]; then
  CC=clang CXX=clang++ cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_FUZZ=ON \
    -DKVSERVE_SANITIZE=ON -DKVSERVE_TESTS=OFF -DKVSERVE_BENCH=OFF >/dev/null
fi
cmake --build $B --target "${TARGETS[@]}"
# The seed corpora, as the make_corpus fixtures of CI write them; the inputs a run finds are
# added to them.
ctest --test-dir $F -R '_make_corpus$' >/dev/null

mkdir -p "$OUT"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1
found=0
rows=()
for t in "${TARGETS[@]}"; do
  corpus=$F/${CORPUS[$t]}
  before=$(find "$corpus" -type f | wc -l)
  seed=$RANDOM
  echo "==> $t: ${SECONDS_PER} s, seed $seed, corpus $corpus ($before inputs); log $OUT/$t.log" >&2
  env=()
  [ "$t" = tokenizer_fuzz ] &&
    env=(KVSERVE_FUZZ_VOCABS="$SHARED/vocab/ggml-vocab-gpt-2.gguf:$SHARED/vocab/ggml-vocab-llama-spm.gguf")
  rc=0
  env "${env[@]}" "$F/$t" -seed=$seed -max_total_time="$SECONDS_PER" -max_len="${MAX_LEN[$t]}" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$OUT/$t-" -print_final_stats=1 "$corpus" >"$OUT/$t.log" 2>&1 || rc=$?
  execs=$(awk '/^stat::number_of_executed_units:/ {v = $2} END {print v}' "$OUT/$t.log")
  rate=$(awk '/^stat::average_exec_per_sec:/ {v = $2} END {print v}' "$OUT/$t.log")
  after=$(find "$corpus" -type f | wc -l)
  findings=$(find "$OUT" -maxdepth 1 -name "$t-*" -type f | wc -l)
  [ "$rc" -eq 0 ] && [ "$findings" -eq 0 ] || found=1
  echo "    $t: ${execs:-?} executions, ${rate:-?} exec/s, corpus $before -> $after, findings $findings, exit $rc" >&2
  rows+=("{\"target\": \"$t\", \"seconds\": $SECONDS_PER, \"seed\": $seed, \"executions\": ${execs:-null},
    \"exec_per_s\": ${rate:-null}, \"corpus_before\": $before, \"corpus_after\": $after,
    \"findings\": $findings, \"exit\": $rc}")
done
(IFS=,; echo "[${rows[*]}]") >"$OUT/summary.json"
echo "wrote $OUT/summary.json" >&2
exit $found
