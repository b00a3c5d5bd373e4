#!/usr/bin/env bash
# Builds native/ort_direct.node, the engine's direct ONNX Runtime binding (native/ort_direct.c,
# docs/design.md §10), with gcc and the Node-API headers of the npm package node-api-headers. The
# engine uses it where it is built and falls back to onnxruntime-node's binding where it is not, so
# a failed build is reported and does not fail the install. scripts/setup.sh and the Dockerfile
# run it. Usage: bash scripts/build-native.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=native/build/ort_direct.node
headers=$(node -p "require('node-api-headers').include_dir" 2>/dev/null) || headers=""
if [ -z "$headers" ] || ! command -v gcc >/dev/null; then
  echo "build-native: gcc or the node-api-headers package is missing; the engine will use onnxruntime-node's binding" >&2
  exit 0
fi
mkdir -p native/build
if gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fvisibility=hidden -shared -fPIC -I "$headers" \
    native/ort_direct.c -o "$out.tmp" -ldl -lpthread; then
  mv "$out.tmp" "$out"
  echo "build-native: built $out"
else
  rm -f "$out.tmp"
  echo "build-native: compiling native/ort_direct.c failed; the engine will use onnxruntime-node's binding" >&2
fi
