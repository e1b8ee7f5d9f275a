#!/usr/bin/env bash
# One accelerator booking in one command, on a node without network whose Python already has JAX:
# install the carried wheelhouse (`python -m accelerator.wheelhouse`) beside the site's packages, run the
# runbook within the budget, copy its report (runbook.json, runbook.md) to $OUT.
#
#   OUT=DIR bash accelerator/booking.sh [BUDGET_S] [accelerator.runbook flags, e.g. --only=offline]
#
# BUDGET_S (default 540) is the wall time of the whole command, installing included: under a
# 10-minute limit it leaves a minute for starting and copying. WHEELHOUSE (default: wheelhouse)
# is the folder of wheels carried with the tree; PYTHON (default: python3) the site's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-540}"
shift || true
wheelhouse="${WHEELHOUSE:-wheelhouse}"
out="${OUT:-runs/booking}"
python="${PYTHON:-python3}"
start=$(date +%s)
scratch="$(mktemp -d)"
site="$scratch/site"
mkdir -p "$site"
wheels=("$wheelhouse"/*.whl)
if [ -e "${wheels[0]}" ]; then
  if "$python" -m pip --version > /dev/null 2>&1; then
    "$python" -m pip install --quiet --no-index --no-deps --target="$site" "${wheels[@]}"
  else  # no pip: a wheel is a zip archive laid out as site-packages
    for wheel in "${wheels[@]}"; do "$python" -m zipfile -e "$wheel" "$site"; done
  fi
  echo "installed ${#wheels[@]} wheels from $wheelhouse in $(( $(date +%s) - start )) s"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
status=0
"$python" -m accelerator.runbook --budget_s="$(( budget - ($(date +%s) - start) ))" --results="$scratch/runbook" "$@" \
  || status=$?
mkdir -p "$out"
cp "$scratch/runbook/runbook.json" "$scratch/runbook/runbook.md" "$out/"
echo "report in $out/runbook.md"
exit "$status"
