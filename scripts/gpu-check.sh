#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: the host check of scripts/setup-gpu.sh (it installs
# the CUDA provider into gpu-runtime/ first if it is not there), then scripts/gpu-check.ts: the CUDA
# provider loads models/sotu-t2r, the parity check passes on it, and decode steps are timed at
# batch 1..256. Arguments go to gpu-check.ts (--model DIR, --device N, --steps N).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f gpu-runtime/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so ]; then
  bash scripts/setup-gpu.sh --check
else
  bash scripts/setup-gpu.sh
fi
NODE_OPTIONS="${NODE_OPTIONS:-} --conditions=t2r-cuda" exec npx tsx scripts/gpu-check.ts "$@"
