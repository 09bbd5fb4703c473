#!/usr/bin/env bash
# Build the ONNX Runtime custom-op library for the DCNv3 node of `--dcnv3 custom` exports:
#   build/onnxruntime/libdcnv3_onnxruntime.so   (`make deploy-ortlib` runs this script)
#
# It compiles ops_dcnv3/csrc/onnxruntime/dcnv3_ort.cpp, which includes the CPU kernel of
# ops_dcnv3._C. Needs a C++20 compiler, torch (headers only, for the shared Geometry struct) and
# ONNX Runtime's C/C++ API headers, which the onnxruntime pip wheel does not ship:
#   ORT_INCLUDE_DIR=<dir with onnxruntime_cxx_api.h>   e.g. include/ of an ONNX Runtime release archive;
#   otherwise, on Debian/Ubuntu machines, the headers of Debian's libonnxruntime-dev package are
#   downloaded once with apt-get (no installation, nothing in /etc changed) and cached under
#   ~/.cache/internimage-mm/. Any header version with C API >= 17 works with any newer runtime.
# Environment: PY (python with torch, default .venv/bin/python), DCNV3_ORT_BUILD_DIR, CXX.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT_DIR=${DCNV3_ORT_BUILD_DIR:-build/onnxruntime}
LIB=$OUT_DIR/libdcnv3_onnxruntime.so
SRC=ops_dcnv3/csrc/onnxruntime/dcnv3_ort.cpp
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/internimage-mm
DEBIAN_SUITE=${ORT_HEADERS_DEBIAN_SUITE:-trixie}
log() { printf '[deploy-ortlib] %s\n' "$*"; }

fetch_debian_headers() {
  # apt-get with a private list and cache: downloads libonnxruntime-dev's .deb from the Debian
  # archive and unpacks only its headers.
  local dir=$1 work
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
    log "no apt-get/dpkg-deb here: set ORT_INCLUDE_DIR to the include/ folder of an ONNX Runtime release"
    return 1
  }
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $DEBIAN_SUITE main" \
    > "$work/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/none"
              -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
  log "fetching the ONNX Runtime headers (Debian $DEBIAN_SUITE libonnxruntime-dev) into $dir"
  (cd "$work" && apt-get -qq "${opts[@]}" update && apt-get -qq "${opts[@]}" download libonnxruntime-dev) || {
    rm -rf "$work"
    log "could not download libonnxruntime-dev: set ORT_INCLUDE_DIR to the include/ folder of an ONNX Runtime release"
    return 1
  }
  dpkg-deb -x "$work"/libonnxruntime-dev_*.deb "$work/x"
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir" && mv "$work/x/usr/include/onnxruntime" "$dir"
  rm -rf "$work"
}

if [ -z "${ORT_INCLUDE_DIR:-}" ]; then
  ORT_INCLUDE_DIR=$CACHE/onnxruntime-headers-debian-$DEBIAN_SUITE
  [ -f "$ORT_INCLUDE_DIR/onnxruntime_cxx_api.h" ] || fetch_debian_headers "$ORT_INCLUDE_DIR"
fi
[ -f "$ORT_INCLUDE_DIR/onnxruntime_cxx_api.h" ] || {
  log "ORT_INCLUDE_DIR=$ORT_INCLUDE_DIR has no onnxruntime_cxx_api.h"; exit 1; }

TORCH_INC=$("$PY" -c 'from torch.utils.cpp_extension import include_paths; print(" ".join("-isystem " + p for p in include_paths()))' 2>/dev/null)
key=$(cat "$SRC" ops_dcnv3/csrc/dcnv3.h ops_dcnv3/csrc/cpu/*.h ops_dcnv3/csrc/cpu/*.inc "$ORT_INCLUDE_DIR/onnxruntime_c_api.h" "$0" \
      | sha256sum | cut -c1-16)-$("$PY" -c 'import torch; print(torch.__version__)')
if [ -f "$LIB" ] && [ "$(cat "$LIB.stamp" 2>/dev/null)" = "$key" ]; then
  log "$LIB is up to date"
  exit 0
fi
mkdir -p "$OUT_DIR"
start=$SECONDS
log "compiling $SRC"
# -fopenmp-simd: the kernel's `omp simd` loops vectorise without linking an OpenMP runtime (threads
# come from ONNX Runtime's pool). Hidden visibility: only RegisterCustomOps is exported.
# shellcheck disable=SC2086
${CXX:-g++} -std=c++20 -O3 -fPIC -shared -fopenmp-simd -fvisibility=hidden -fvisibility-inlines-hidden \
  -Iops_dcnv3/csrc -isystem "$ORT_INCLUDE_DIR" $TORCH_INC "$SRC" -o "$LIB.tmp" -Wl,--no-undefined -Wl,--as-needed
mv "$LIB.tmp" "$LIB"
echo "$key" > "$LIB.stamp"
log "built $LIB in $((SECONDS - start)) s"
