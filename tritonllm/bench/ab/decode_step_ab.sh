#!/bin/bash
# The before/after A/B in docs/performance.md ("Where a decode step goes"): main's runner vs this tree's in
# fp32 and int8, interleaved, three rounds; each line a fresh process (tritonllm/bench/ab/decode_step.py).
# Usage: tritonllm/bench/ab/decode_step_ab.sh /path/to/main /path/to/this/tree
PY=${PY:-$(dirname "$0")/../../../.venv/bin/python}
here=$(dirname "$0")
for round in 1 2 3; do
  echo "--- round $round $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
  $PY "$here/decode_step.py" "$1" - 2>&1 | grep "B="
  $PY "$here/decode_step.py" "$2" fp32 2>&1 | grep "B="
  $PY "$here/decode_step.py" "$2" int8 2>&1 | grep "B="
done
