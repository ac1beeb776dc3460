#!/usr/bin/env bash
# Run on a machine with NVIDIA GPUs (see bench/README.md):
# 1. a `hardwareType: gpu` lab on the process runtime passes mldesk's GPU check and runs;
# 2. the GPU queue: N+1 executions with `gpus: 1` on a machine with N GPUs -> N run, each
#    on its own GPU (CUDA_VISIBLE_DEVICES disjoint), one waits in `queued` with the
#    reason, then runs when a GPU is free; the resource samples show the real GPU
#    utilisation of the small PyTorch/CuPy job (bench/gpu_queue_lab).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=app MLDESK_HOME=${MLDESK_HOME:-$(mktemp -d)}
PY=${PYTHON:-python3}
M="$PY -m mldesk"
nvidia-smi -L || { echo "gpu_check: no nvidia-smi here"; exit 1; }
$PY -c "import yaml" || { echo "needs PyYAML for $PY"; exit 1; }

echo "== 1. hardwareType: gpu on the process runtime"
$M run bench/gpu_lab --runtime process
echo "exit: $?"

echo "== 2. the GPU queue"
$M hosts status local
N=$(nvidia-smi -L | grep -c '^GPU ')
ids=()
for i in $(seq 0 "$N"); do
  ids+=("$($M run bench/gpu_queue_lab --runtime process -d --name "gpu-queue-$i")")
  sleep 0.2
done
sleep 8
echo "-- after 8 s (expect $N running on distinct GPUs, 1 queued):"
for id in "${ids[@]}"; do
  $M show "$id" --json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["name"], d["state"], "gpus", d["gpus"], d.get("reason") or "")'
done
$M hosts status local
for id in "${ids[@]}"; do
  while [ "$($M show "$id" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')" != finished ]; do
    sleep 1
    st=$($M show "$id" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    case $st in failed|stopped) echo "$id $st"; break;; esac
  done
done
echo "-- results"
fail=0
seen=()
for id in "${ids[@]}"; do
  $M logs "$id" | head -3
  $M stats "$id" --json | $PY -c '
import json, sys
d = json.load(sys.stdin)
for i, g in d["gpu"].items():
    util = [v for _, v in g.get("util_percent", [])]
    mem = [v for _, v in g.get("mem_used_bytes", [])]
    print("  GPU %s: %d samples, mean util %.0f %%, max util %.0f %%, peak memory %.0f MiB" % (
        i, len(util), sum(util) / max(1, len(util)), max(util or [0]), max(mem or [0]) / 2**20))
rss = [v for _, v in d["rss_bytes"]]
print("  peak RSS %.0f MiB, %d CPU samples" % (max(rss or [0]) / 2**20, len(d["cpu_percent"])))'
done
for id in "${ids[@]}"; do
  $M show "$id" --json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["id"], d["state"], d["gpus"])'
done
$M ls
