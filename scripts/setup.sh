#!/usr/bin/env bash
# Installs everything kvserve needs (Debian packages, a Python virtualenv), fetches the
# models (SmolLM2, the default, and Gemma-3-270M) and builds. Safe to re-run: each step
# is skipped when already done.
# Env: BUILD_DIR (default build), BUILD_TYPE (default Release), KVSERVE_SKIP_MODEL=1.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(build-essential cmake ninja-build pkg-config git clang clang-format
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcpp-httplib-dev
  libcli11-dev libpcre2-dev libfmt-dev libspdlog-dev python3-venv unzip libclang-rt-14-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Python tools (model fetching, synthetic models, client tests) live in .venv.
if [ ! -f .venv/.stamp ] || ! cmp -s scripts/requirements.txt .venv/.stamp; then
  echo "==> python virtualenv (.venv)"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r scripts/requirements.txt
  cp scripts/requirements.txt .venv/.stamp
fi

if [ "${KVSERVE_SKIP_MODEL:-0}" != 1 ]; then
  bash scripts/fetch_model.sh all
fi

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
echo "==> build ($BUILD_DIR, $BUILD_TYPE)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR"
