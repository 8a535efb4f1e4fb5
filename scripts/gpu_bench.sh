#!/usr/bin/env bash
# The GPU benchmark of docs/performance.md in one run: the card and versions, then the plain
# assignment loop and the five engines (convae.train.ENGINES), 10 epochs each on all of MNIST,
# on the same seed and batches. Needs a CUDA GPU, PyTorch and MNIST in data/ (`python -m convae
# fetch-data`). Usage: scripts/gpu_bench.sh [OUTPUT_FILE] [extra bench options]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_bench.txt}
shift || true
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
{
    date -u +"%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version(), "| TF32 conv", torch.backends.cudnn.allow_tf32, "| TF32 matmul", torch.backends.cuda.matmul.allow_tf32)'
    echo "command: $py -m convae bench --device cuda --epochs 10 --engine eager graph graph-channels-last graph-compile graph-compile-channels-last $*"
    "$py" -m convae bench --device cuda --epochs 10 --engine eager graph graph-channels-last graph-compile graph-compile-channels-last "$@"
} 2>&1 | tee "$out"
