#!/usr/bin/env bash
# Run on a machine with an NVIDIA GPU: a `hardwareType: gpu` lab on the process
# runtime must pass mldesk's GPU check (nvidia-smi) and run to completion.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=app MLDESK_HOME=$(mktemp -d)
nvidia-smi -L
python3 -c "import yaml" || { echo "needs PyYAML for python3"; exit 1; }
python3 -m mldesk run bench/gpu_lab --runtime process
echo "exit: $?"
python3 -m mldesk ls
