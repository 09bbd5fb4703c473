#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv/ (idempotent).
#
# A second run with nothing changed only compares two stamps and exits. Environment:
#   PYTHON          interpreter used to create .venv (default: python3)
#   TORCH_SPEC      torch requirement (default: the pin in requirements.txt); install your own CUDA
#                   build of torch into .venv beforehand and the pinned one is kept out of the way
#   FORCE_CUDA=1    compile the CUDA kernels of ops_dcnv3 (and mmcv) even where no GPU is visible
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
export CUDA_HOME=${CUDA_HOME:-$( [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda || true )}
[ -n "$CUDA_HOME" ] || unset CUDA_HOME

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

deps_key=$(hash_of requirements.txt requirements-dev.txt requirements-deploy.txt tools/setup_env.sh tools/build_mmcv_wheel.sh)
ext_key=$(hash_of setup.py pyproject.toml $(find ops_dcnv3/csrc -type f 2>/dev/null | sort))-cuda${FORCE_CUDA:-0}
deps_stamp=$VENV/.stamp-deps
ext_stamp=$VENV/.stamp-ext

log() { printf '[setup] %s\n' "$*"; }
pipq() { "$PY" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || [ "${PIPESTATUS[0]}" = 0 ]; }

if [ ! -x "$PY" ]; then
  log "creating .venv with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_key" ]; then
  start=$SECONDS
  pipq install -q -U pip 'setuptools<81' wheel ninja
  torch_pin=$(grep -E '^torch==' requirements.txt)
  vision_pin=$(grep -E '^torchvision==' requirements.txt)
  if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    log "installing ${TORCH_SPEC:-$torch_pin} ${vision_pin}"
    pipq install -q "${TORCH_SPEC:-$torch_pin}" "$vision_pin"
  fi
  log "installing the OpenMMLab stack and test tools"
  # torch and torchvision are already in place; keep pip from replacing them.
  constraints=$(mktemp)
  "$PY" - > "$constraints" <<'PY'
import importlib.metadata as m
for name in ('torch', 'torchvision'):
    print(f'{name}=={m.version(name)}')
PY
  grep -vE '^(torch|torchvision|mmcv)==' requirements.txt > "$constraints.req"
  pipq install -q -c "$constraints" -r "$constraints.req" -r requirements-dev.txt -r requirements-deploy.txt
  rm -f "$constraints" "$constraints.req"
  # mmcv: built once from source and cached outside the work tree (see the script). mmdet, mmseg and
  # mmpretrain do not declare it as a pip dependency, so installing them above did not pull it in.
  bash tools/build_mmcv_wheel.sh "$PY"
  echo "$deps_key" > "$deps_stamp"
  rm -f "$ext_stamp"
  log "dependencies ready in $((SECONDS - start)) s"
fi

if [ "$(cat "$ext_stamp" 2>/dev/null)" != "$ext_key" ] || ! "$PY" -c "import ops_dcnv3._C" >/dev/null 2>&1; then
  start=$SECONDS
  log "building ops_dcnv3 (pip install --no-build-isolation -e .)"
  MAX_JOBS=${MAX_JOBS:-$(nproc)} pipq install -q --no-build-isolation --no-deps -e .
  "$PY" - <<'PY'
import torch
import ops_dcnv3
from ops_dcnv3 import _C  # noqa: F401  fails loudly when the extension is missing
print('[setup] ops_dcnv3 compiled kernels:', ', '.join(ops_dcnv3.compiled_devices()))
PY
  echo "$ext_key" > "$ext_stamp"
  log "ops_dcnv3 built in $((SECONDS - start)) s"
fi
