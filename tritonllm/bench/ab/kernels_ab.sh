#!/bin/bash
# Our CPU kernels (tritonllm/engine/cpu_kernels.py) against torch's (TRITONLLM_CPU_KERNELS=0:
# oneDNN, fbgemm, SDPA) on this tree, fp32 and int8, interleaved, three rounds; each line a
# fresh process timing the median decode step (tritonllm/bench/ab/decode_step.py). docs/performance.md, "CPU kernels".
# Usage: tritonllm/bench/ab/kernels_ab.sh [threads]
PY=${PY:-$(dirname "$0")/../../../.venv/bin/python}
here=$(dirname "$0")
tree=$(cd "$here/../../.." && pwd)
for round in 1 2 3; do
  echo "--- round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
  for weights in fp32 int8; do
    for kernels in 0 1; do
      echo -n "kernels=$kernels "
      TRITONLLM_CPU_KERNELS=$kernels THREADS=${1:-1} $PY "$here/decode_step.py" "$tree" $weights 2>&1 | grep "B="
    done
  done
done
