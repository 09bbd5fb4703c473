#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU (or per CPU share without a GPU).
#
#   tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py options]
#
# Several machines: run the same command on each with NNODES=<machines>, NODE_RANK=<0..NNODES-1>,
# MASTER_ADDR=<address of node 0> and the same PORT (see tools/torchrun.sh).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NPROC_PER_NODE [train.py options]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
exec "$(dirname "$0")/torchrun.sh" "$NPROC" train.py "$CONFIG" "$@"
