#!/usr/bin/env bash
# Run every benchmark of benchmarks/README.md and keep each one's output.
#
#   benchmarks/run_all.sh                 # the full set (~10 min on 2 cores)
#   benchmarks/run_all.sh --quick         # smoke sizes of each (~35 s)
#   OUT=/tmp/bench benchmarks/run_all.sh  # where the logs go (default results/benchmarks/<UTC time>)
#
# Each benchmark prints its figures; they are also written to $OUT/<name>.log. The solver
# benchmark writes its results.csv and README section into $OUT/solver/, not over the committed
# benchmarks/solver/README.md (copy them there when the figures are meant to change).
# Exit status: 0 when every benchmark ran, 1 when any failed (all are still run).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help)
      sed -n '2,12p' "$0"
      exit 0
      ;;
    *)
      echo "run_all.sh: unknown argument '$arg' (use --quick or --help)" >&2
      exit 2
      ;;
  esac
done

out="${OUT:-results/benchmarks/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out/solver" || exit 2
python="${PYTHON:-python3}"

if ((quick)); then
  solver_args=(--quick)
  simulator_args=(--no-matrix --repeats 1)
  serving_args=(--seconds 5 --rates 100 --step-s 5)
else
  solver_args=()
  simulator_args=()
  serving_args=()
fi

failed=()
run() {
  local name="$1"
  shift
  echo "== $name: $*"
  local started=$SECONDS
  if "$@" 2>&1 | tee "$out/$name.log"; then
    echo "== $name: done in $((SECONDS - started)) s"
  else
    echo "== $name: FAILED after $((SECONDS - started)) s (log: $out/$name.log)" >&2
    failed+=("$name")
  fi
}

run solver "$python" benchmarks/solver/run.py "${solver_args[@]}" --out "$out/solver"
run simulator "$python" benchmarks/simulator/run.py "${simulator_args[@]}"
run predictor "$python" benchmarks/predictor/bench.py
run serving "$python" benchmarks/serving/bench.py "${serving_args[@]}"

echo "logs in $out"
if ((${#failed[@]} > 0)); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
