#!/usr/bin/env bash
# Sets everything up (see setup.sh), fetches the default model and serves it with the
# OpenAI-compatible API on http://127.0.0.1:${PORT:-8000}/v1 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
exec build/kvserve serve --model "$MODEL" --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"
