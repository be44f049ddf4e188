#!/usr/bin/env bash
# Read-only check of hami-mig against this node's NVIDIA GPUs, written as one JSON report.
#
#   scripts/gpu-check.sh [REPORT.json]
#
# Runs `hami-mig doctor --json`, `hami-mig devices --json`, the real-GPU half of
# tests/nvml/test_conformance.py and nvidia-smi's read-only listings (-L, mig -lgip, mig -lgipp).
# Nothing here changes a GPU: doctor and the conformance suite reach NVML through a guard that
# refuses every call that is not a read; devices only reads. Run it from a checkout with the test
# tools installed (`pip install -e '.[test]'`), as root on the GPU node.
#
# The report goes to REPORT.json, else ./gpu-check-<GPU model>.json. Exit 0 when every step
# passed (and the conformance suite ran on a real GPU), 1 otherwise; the report is written either way.
#
# Environment: PYTHON (default .venv/bin/python of this checkout, else python3);
# GPU_CHECK_BACKEND=sim tries the script without a GPU (the simulator, and the suite's simulated
# half), with GPU_CHECK_SIM_GPUS (default A100-SXM4-80GB:1).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
backend="${GPU_CHECK_BACKEND:-nvml}"
case "$backend" in
  nvml) flags=(); marker="gpu" ;;
  sim) flags=(--backend sim --sim-gpus "${GPU_CHECK_SIM_GPUS:-A100-SXM4-80GB:1}"); marker="not gpu" ;;
  *) echo "gpu-check.sh: GPU_CHECK_BACKEND=$backend is not valid; nvml or sim" >&2; exit 2 ;;
esac
if [ $# -gt 1 ]; then
  echo "usage: scripts/gpu-check.sh [REPORT.json]" >&2
  exit 2
fi
report="${1:-}"
if [ -n "$report" ]; then report="$(cd "$(dirname "$report")" 2>/dev/null && pwd)/$(basename "$report")" || {
  echo "gpu-check.sh: the directory of $1 does not exist" >&2; exit 2; }; fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() {  # step NAME COMMAND...: stdout to NAME.json, stderr to NAME.err, exit code to NAME.rc
  local name="$1"; shift
  "$@" >"$work/$name.json" 2>"$work/$name.err"
  echo $? >"$work/$name.rc"
}

hostname >"$work/hostname.txt" 2>/dev/null
uname -r >"$work/kernel.txt" 2>/dev/null
if [ "$backend" = nvml ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi -L >"$work/nvidia-smi-L.txt" 2>&1
  nvidia-smi mig -lgip >"$work/nvidia-smi-lgip.txt" 2>&1
  nvidia-smi mig -lgipp >"$work/nvidia-smi-lgipp.txt" 2>&1
fi
step doctor "$py" -m hami_mig doctor --json "${flags[@]}"
step devices "$py" -m hami_mig devices --json "${flags[@]}"
(cd "$root" && "$py" -m pytest tests/nvml/test_conformance.py -m "$marker" -q -rs -p no:cacheprovider \
  --junitxml="$work/conformance.xml") >"$work/conformance.txt" 2>&1
echo $? >"$work/conformance.rc"

"$py" -m hami_mig.doctor.hwreport "$work" "$backend" "$report"
