#!/bin/bash
# Interleaved A/B of the serving path between two checkouts of this repository (e.g. a worktree
# of the commit before a change, and this one): three overhead rounds alternating, then each
# tree's capacity and 1-MiB tensor runs. The machine is shared and noisy, so only the pairs of
# one invocation compare.  Usage: benchmarks/serving/ab.sh OLD_TREE NEW_TREE
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd)
run() {  # tree, then bench.py arguments
  local tree=$1; shift
  (cd "$tree" && PYTHONPATH="$tree" python3 benchmarks/serving/bench.py "$@")
}
uptime
for round in 1 2 3; do
  for tree in "$old" "$new"; do
    echo "== round $round: $tree"
    run "$tree" --overhead-only --no-prometheus | grep '^overhead'
  done
done
for tree in "$old" "$new"; do
  echo "== capacity and tensor: $tree"
  run "$tree" --rates 300,600,800 | tail -5
  run "$tree" --tensor-mib 1 | tail -1
done
uptime
