#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU (or per CPU share without a GPU).
#
#   tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py options]
#
# Several machines: run the same command on each with NNODES=<machines>, NODE_RANK=<0..NNODES-1>,
# MASTER_ADDR=<address of node 0> and the same PORT. PYTHON selects the interpreter (default: the
# repository's .venv when present).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC_PER_NODE [train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
TOOLS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$TOOLS")
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python; fi
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --master_port="$PORT" \
  --nproc_per_node="$NPROC" \
  "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@"
