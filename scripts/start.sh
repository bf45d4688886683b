#!/usr/bin/env bash
# Sets everything up (see setup.sh), fetches the default model and runs kvserve on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
exec build/kvserve info --model "$MODEL"
