#!/usr/bin/env bash
# Shared torchrun launcher of dist_train.sh and dist_test.sh (not meant to be called directly).
#
#   tools/torchrun.sh NPROC_PER_NODE SCRIPT [script arguments]
#
# Several machines: run the same command on each with NNODES=<machines>, NODE_RANK=<0..NNODES-1>,
# MASTER_ADDR=<address of node 0> and the same PORT. PYTHON selects the interpreter (default: the
# repository's .venv when present).
set -euo pipefail
NPROC=$1
SCRIPT=$2
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

# `python -m torch.distributed.run` is what `torchrun` runs, with the chosen interpreter.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" \
  --node_rank="$NODE_RANK" \
  --master_addr="$MASTER_ADDR" \
  --master_port="$PORT" \
  --nproc_per_node="$NPROC" \
  "$TOOLS/$SCRIPT" "$@" --launcher pytorch
