#!/usr/bin/env bash
# One GPU check of the whole CUDA side, for a machine with a GPU (a few minutes on one modern GPU):
#   1. build ops_dcnv3 in place with its CUDA kernels for the visible GPU,
#   2. run the `cuda`- and `nvcc`-marked tests (kernels vs the float64 CPU kernel, autocast, the
#      nvcc build test),
#   3. tools/benchmark_dcnv3.py --device cuda in float32, float16 and bfloat16,
#   4. a few training iterations of the full-size InternImage-T Mask R-CNN on the demo data
#      (needs the OpenMMLab stack: `make setup` installs it).
# It prints one summary table and exits non-zero if any step failed (2 when no GPU is visible).
#
#   tools/gpu_check.sh                 # PYTHON defaults to .venv/bin/python, else python3
#   GPU_CHECK_LOG=DIR tools/gpu_check.sh   # keep each step's full output in DIR
#
# Environment: PYTHON, TORCH_CUDA_ARCH_LIST (default: the visible GPU's), BENCH_BATCH (default 32),
# TRAIN_ITERS (default 10).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
LOG=${GPU_CHECK_LOG:-$(mktemp -d)}
mkdir -p "$LOG"
BENCH_BATCH=${BENCH_BATCH:-32}
TRAIN_ITERS=${TRAIN_ITERS:-10}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

gpu=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)
if [ -z "$gpu" ]; then
  echo "gpu_check: no CUDA GPU is visible to $PYTHON (torch.cuda.is_available() is False); run it on a machine with a GPU" >&2
  exit 2
fi
echo "gpu_check: $gpu, $("$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'), logs in $LOG"

names=() results=() seconds=() details=()
failed=0
# step NAME DETAIL_COMMAND -- COMMAND...: runs COMMAND with its output in $LOG/NAME.log; DETAIL_COMMAND
# (evaluated afterwards) prints the table's detail column from that log.
step() {
  local name=$1 detail=$2
  shift 3
  local start=$SECONDS rc
  echo "== $name"
  "$@" > "$LOG/$name.log" 2>&1
  rc=$?
  names+=("$name")
  seconds+=("$((SECONDS - start))")
  if [ $rc -eq 0 ]; then results+=("ok"); else results+=("FAIL($rc)"); failed=1; fi
  details+=("$(eval "$detail" 2>/dev/null | tr '\n' ' ' | cut -c1-200)")
  tail -n 3 "$LOG/$name.log"
}

# 1. Build in place for the visible GPU (torch reads its architecture when TORCH_CUDA_ARCH_LIST is unset).
step build "grep -o 'compiled kernels: .*' \$LOG/build.log" -- bash -c '
  FORCE_CUDA=1 "$0" setup.py build_ext --inplace &&
  "$0" -c "import ops_dcnv3; print(\"compiled kernels:\", ops_dcnv3.compiled_devices()); assert \"cuda\" in ops_dcnv3.compiled_devices(), ops_dcnv3.load_error()"' "$PYTHON"

# 2. The CUDA tests.
step tests "grep -E '(passed|failed|error)' \$LOG/tests.log | tail -n 1" -- \
  "$PYTHON" -m pytest -q -p no:cacheprovider -m "cuda or nvcc" tests/ops_dcnv3

# 3. The operator benchmark in three dtypes.
for dtype in float32 float16 bfloat16; do
  step "bench-$dtype" "awk '\$1 ~ /^[0-9]+x[0-9]+x/ {printf \"%s %s %s; \", \$1, \$2, \$5}' \$LOG/bench-$dtype.log" -- \
    "$PYTHON" tools/benchmark_dcnv3.py --device cuda --dtype "$dtype" --batch "$BENCH_BATCH" --repeats 20
done

# 4. A few iterations of the full-size Mask R-CNN InternImage-T (demo data, no pretrained weights).
train_cfg="$LOG/mask-rcnn_internimage-t_gpu-check.py"
cat > "$train_cfg" <<EOF
# The demo detection config with the full-size InternImage-T Mask R-CNN (backbone, FPN and heads).
_base_ = '$ROOT/configs/demo/mask-rcnn_internimage-micro_fpn_demo-coco.py'
data_root = '$ROOT/data/demo_coco/'
model = dict(
    backbone=dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32], drop_path_rate=0.2,
                  with_cp=True),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256),
    rpn_head=dict(in_channels=256, feat_channels=256),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=256),
        bbox_head=dict(in_channels=256, fc_out_channels=1024),
        mask_roi_extractor=dict(out_channels=256),
        mask_head=dict(in_channels=256, conv_out_channels=256)))
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=$TRAIN_ITERS, val_interval=10**9)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=10**9, by_epoch=False))
log_processor = dict(window_size=1, by_epoch=False)
EOF
step train "grep -o 'Iter(train) \[ *$TRAIN_ITERS/$TRAIN_ITERS\].* loss: [0-9.naninf]*' \$LOG/train.log | grep -o 'loss: .*'" -- bash -c '
  "$0" tools/make_demo_data.py --task det &&
  "$0" tools/train.py "$1" --work-dir "$2/train_work_dir"' "$PYTHON" "$train_cfg" "$LOG"
# The run must have reached its last iteration with finite losses.
if ! grep -qE "Iter\(train\) \[ *$TRAIN_ITERS/$TRAIN_ITERS\]" "$LOG/train.log" ||
   grep -E 'Iter\(train\)' "$LOG/train.log" | grep -qiE 'loss: (nan|inf)'; then
  results[${#results[@]}-1]="FAIL(loss)"
  failed=1
fi

echo
printf '%-16s %-10s %6s  %s\n' step result seconds detail
printf '%s\n' "--------------------------------------------------------------------------------------------"
for i in "${!names[@]}"; do
  printf '%-16s %-10s %6s  %s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}" "${details[$i]}"
done
echo "full outputs: $LOG"
exit $failed
