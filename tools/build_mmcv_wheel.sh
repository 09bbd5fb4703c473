#!/usr/bin/env bash
# Build (once) and install mmcv 2.1.0 with its compiled ops into the given Python environment.
#
# mmcv publishes no wheel for current PyTorch, so we build from the source distribution:
#   * without build isolation, so the ops compile against the torch that is installed (isolation
#     would pull a different torch into a throw-away environment);
#   * with the C++ standard raised from c++17 to c++20, which torch >= 2.10 headers require;
#   * MMCV_WITH_OPS=1 (CUDA ops too when torch sees a GPU or FORCE_CUDA=1, as mmcv decides).
# The wheel is cached outside the work tree, keyed by mmcv, torch and Python versions, so a new
# virtual environment on the same machine installs it in seconds.
set -euo pipefail

PY=$(command -v "${1:?usage: build_mmcv_wheel.sh PYTHON}")
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE_ROOT=${INTERNIMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/internimage-mm}

key=$("$PY" - <<'PY'
import sys, torch
cuda = 'cu' + torch.version.cuda.replace('.', '') if torch.version.cuda else 'cpu'
print(f"torch{torch.__version__.split('+')[0]}-{cuda}-py{sys.version_info.major}{sys.version_info.minor}")
PY
)
flavour=cpu
if [ "${FORCE_CUDA:-0}" = 1 ] || "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  flavour=cuda
fi
wheel_dir="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-$key-$flavour"

verify() {
  "$PY" - <<'PY'
import torch
import mmcv
from mmcv.ops import nms
import mmcv._ext  # noqa: F401  the compiled ops must be present
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], f'mmcv.ops.nms returned {keep.tolist()}'
print(f'mmcv {mmcv.__version__} with compiled ops: OK')
PY
}

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("mmcv"))' 2>/dev/null || true)
if [ "$installed" = "$MMCV_VERSION" ] && verify >/dev/null 2>&1; then
  exit 0
fi

if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[mmcv] building mmcv $MMCV_VERSION ($flavour) from source; this takes about 15-20 minutes on 2 cores"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work" -q
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  std=$("$PY" - <<'PY'
import torch
major, minor = (int(v) for v in torch.__version__.split('.')[:2])
print('c++20' if (major, minor) >= (2, 10) else 'c++17')
PY
)
  sed -i "s/-std=c++17/-std=$std/g; s/-std=c++14/-std=$std/g" "$src/setup.py"
  mkdir -p "$wheel_dir"
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$wheel_dir" . )
fi

"$PY" -m pip install --no-deps --force-reinstall -q "$wheel_dir"/mmcv-*.whl
# and whatever of its dependencies (opencv, addict, yapf, ...) is not there yet
"$PY" -m pip install -q "$wheel_dir"/mmcv-*.whl
verify
