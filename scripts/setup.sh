#!/usr/bin/env bash
# Installs what t2r-serve needs on a fresh Debian 12 machine with Node 20 and npm 11:
# Debian's PyTorch (with OpenBLAS: 12x faster) for the trainer, a C/C++ toolchain for
# better-sqlite3's native build and the engine's direct ONNX Runtime binding, Prometheus (test/ops scrapes a running server with it), Redis and
# HAProxy (the scale-out tests start them), the ONNX Python package (graph passes at export), and
# the npm packages. onnxruntime-node's install script (a CUDA download from outside the registries)
# stays denied: package.json's allowScripts and the environment variable below both say so. The
# CPU binaries ship inside the npm package.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  python3 python3-torch python3-numpy python3-pytest libopenblas0-pthread python3-onnx make g++ ca-certificates prometheus tini redis-server haproxy >/dev/null
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-fund --no-audit
# The engine's direct ONNX Runtime binding (native/ort_direct.c; gcc from g++ above).
bash scripts/build-native.sh
# The shipped models' ONNX graphs and parity references, from their committed checkpoints.
bash scripts/build-models.sh
