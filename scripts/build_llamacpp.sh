#!/usr/bin/env bash
# Builds llama.cpp (for side-by-side benchmarks only) from the source distribution of
# PyPI's llama-cpp-python, cached in .cache/llamacpp. Prints the bin directory.
# Nothing of llama.cpp is committed or linked into kvserve.
#   LLAMACPP_ISA=avx2: an AVX2+FMA+F16C build without AVX-512 (in .cache/llamacpp/build-avx2),
#   to compare against kvserve's AVX2 kernels (KVSERVE_ISA=avx2) on an AVX-512 machine.
# On a host that lists AMX but faults on it (scripts/tools/amx_probe.c), the native build
# goes without AMX, in .cache/llamacpp/build-noamx.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/llamacpp
ISA=${LLAMACPP_ISA:-native}
case "$ISA" in
  native) BUILD=$CACHE/build; ISA_FLAGS=(-DGGML_NATIVE=ON) ;;
  avx2) BUILD=$CACHE/build-avx2
        ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
                   -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF) ;;
  *) echo "LLAMACPP_ISA must be native or avx2" >&2; exit 2 ;;
esac
# A CPU whose flags list AMX may still fault on it (seen on an Intel host under a
# hypervisor: llama-bench died in ggml_backend_amx_mul_mat at ldtilecfg). Probe it; when
# the tiles do not work, build the native version without AMX.
if [ "$ISA" = native ] && grep -qw amx_tile /proc/cpuinfo; then
  mkdir -p "$CACHE"
  if ! { cc -O1 -mamx-tile -o "$CACHE/amx_probe" scripts/tools/amx_probe.c && "$CACHE/amx_probe"; } 2>/dev/null; then
    echo "build_llamacpp: AMX is listed but does not work here: building without it" >&2
    BUILD=$CACHE/build-noamx
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    ISA_FLAGS+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
                "-DCMAKE_C_FLAGS=$NO_AMX" "-DCMAKE_CXX_FLAGS=$NO_AMX")
  fi
fi
BIN=$BUILD/bin
TARGETS=${LLAMACPP_TARGETS:-"llama-bench llama-batched-bench llama-server llama-cli llama-quantize"}
have_all=1
for t in $TARGETS; do [ -x "$BIN/$t" ] || have_all=0; done
if [ $have_all = 1 ]; then
  echo "$BIN"; exit 0
fi
mkdir -p "$CACHE"
PIP=pip3; [ -x .venv/bin/pip ] && PIP=.venv/bin/pip
ls "$CACHE"/llama_cpp_python-*.tar.gz >/dev/null 2>&1 ||
  "$PIP" download -q --no-deps --no-binary :all: llama-cpp-python -d "$CACHE" >&2
sdist=$(ls "$CACHE"/llama_cpp_python-*.tar.gz | head -n 1)
if [ ! -d "$CACHE/src" ]; then
  mkdir -p "$CACHE/src"
  tar -xzf "$sdist" -C "$CACHE/src" --strip-components=1
fi
cmake -S "$CACHE/src/vendor/llama.cpp" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${ISA_FLAGS[@]}" -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
  -DLLAMA_BUILD_SERVER=ON >&2
# shellcheck disable=SC2086
cmake --build "$BUILD" --target $TARGETS >&2
echo "$BIN"
