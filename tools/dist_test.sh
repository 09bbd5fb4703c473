#!/usr/bin/env bash
# Distributed evaluation with torchrun.
#
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py options]
#
# NNODES, NODE_RANK, MASTER_ADDR and PORT work as in dist_train.sh.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NPROC_PER_NODE [test.py options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
exec "$(dirname "$0")/torchrun.sh" "$NPROC" test.py "$CONFIG" "$CHECKPOINT" "$@"
