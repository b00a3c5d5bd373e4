#!/usr/bin/env bash
# The CUDA execution provider from the npm registry alone, then a check of this host's CUDA libraries.
#
#   bash scripts/setup-gpu.sh               install into gpu-runtime/, then check
#   bash scripts/setup-gpu.sh --check       check only: what is installed, what the host lacks
#   bash scripts/setup-gpu.sh --no-driver   skip the driver check (image builds: the NVIDIA Container
#                                           Toolkit mounts the driver when the container runs)
#
# ONNX Runtime loads libonnxruntime_providers_cuda.so from the folder of its own libonnxruntime.so,
# and a provider library works only with the ONNX Runtime release it was built with. npm has that
# pair for 1.29.0: onnxruntime-node@1.29.0 (CPU binaries; its install script would fetch the CUDA
# provider from NuGet, so it stays off) and com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, whose
# providers are ONNX Runtime 1.29.0 built for CUDA 13. Both go into gpu-runtime/, beside the
# project's own onnxruntime-node (the CPU one, another release): node started with
# NODE_OPTIONS=--conditions=t2r-cuda loads this copy instead (package.json "imports": #onnxruntime is
# gpu-runtime/index.cjs, written here, because Node refuses "imports" targets inside node_modules).
# Two ONNX Runtime releases cannot share a process (same SONAME), hence the whole copy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/gpu-runtime
ORT_VERSION=1.29.0
PROVIDERS=com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9
PROVIDERS_SHA1=4fba8272b000ed4b6789715f67b67d2447fab198  # `npm pack` shasum, read on 2026-11-29
BIN=$DIR/node_modules/onnxruntime-node/bin/napi-v6/linux/x64
PROVIDER_LIBS=(libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so)

# What the CUDA provider needs from the host. NEEDED entries of libonnxruntime_providers_cuda.so
# (readelf -d): libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libcuda.so.1.
# cuDNN 9 is not NEEDED but opened at run time (the library builds the name "libcudnn.so.9") when a
# kernel asks for a cuDNN handle, e.g. the reductions our graphs use (ReduceMean, ReduceSum,
# ReduceLogSumExp); required here so that never fails mid-generation.
REQUIRED=(
  "libcudart.so.13|CUDA 13 runtime (NVIDIA's apt repository: cuda-cudart-13-0)"
  "libcublas.so.13|cuBLAS 13 (libcublas-13-0)"
  "libcublasLt.so.13|cuBLASLt 13 (libcublas-13-0)"
  "libcurand.so.10|cuRAND of CUDA 13 (libcurand-13-0)"
  "libcudnn.so.9|cuDNN 9 for CUDA 13 (libcudnn9-cuda-13)"
)
DRIVER="libcuda.so.1|NVIDIA driver >= 580 (CUDA 13); in a container, mounted by the NVIDIA Container Toolkit (docker run --gpus all)"

check_only=false
driver=true
for arg in "$@"; do
  case $arg in
    --check) check_only=true ;;
    --no-driver) driver=false ;;
    *) echo "setup-gpu: unknown argument $arg (use --check, --no-driver)" >&2; exit 2 ;;
  esac
done

install_runtime() {
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || echo '{ "private": true, "description": "ONNX Runtime with the CUDA provider (scripts/setup-gpu.sh)" }' >"$DIR/package.json"
  echo "setup-gpu: onnxruntime-node@$ORT_VERSION into $DIR (install script off: no NuGet download)"
  ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$DIR" --save-exact --ignore-scripts --no-fund --no-audit \
    "onnxruntime-node@$ORT_VERSION" >/dev/null
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "setup-gpu: $PROVIDERS (CUDA provider libraries of ONNX Runtime $ORT_VERSION)"
  npm pack --silent --pack-destination "$tmp" "$PROVIDERS" >/dev/null
  local tgz
  tgz=$(ls "$tmp"/*.tgz)
  if [ "$(sha1sum "$tgz" | cut -d' ' -f1)" != "$PROVIDERS_SHA1" ]; then
    echo "setup-gpu: $PROVIDERS does not have the pinned shasum $PROVIDERS_SHA1; not installing it" >&2
    exit 1
  fi
  echo "module.exports = require('./node_modules/onnxruntime-node')" >"$DIR/index.cjs"
  for lib in "${PROVIDER_LIBS[@]}"; do
    tar -xzf "$tgz" -C "$tmp" "package/Plugins/Linux/x64/$lib"
    install -m 0755 "$tmp/package/Plugins/Linux/x64/$lib" "$BIN/$lib"
  done
}

LDCONFIG=$(command -v ldconfig || echo /sbin/ldconfig)

# Where the dynamic loader finds $1: LD_LIBRARY_PATH first, then the ldconfig cache; empty if nowhere.
find_lib() {
  local d
  IFS=: read -ra dirs <<<"${LD_LIBRARY_PATH:-}"
  for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ -e "$d/$1" ] && { echo "$d/$1"; return; }
  done
  "$LDCONFIG" -p 2>/dev/null | awk -v lib="$1" '$1 == lib && /x86-64/ { print $NF; exit }'
}

missing=()
report() {  # name|what provides it
  local name=${1%%|*} what=${1#*|} path
  path=$(find_lib "$name")
  if [ -n "$path" ]; then
    echo "  ok       $name  $path"
  else
    echo "  MISSING  $name  <- $what"
    missing+=("$name")
  fi
}

check() {
  echo "setup-gpu: the provider pair in $DIR"
  local version
  version=$(node -p "require('$DIR/node_modules/onnxruntime-node/package.json').version" 2>/dev/null || true)
  if [ "$version" = "$ORT_VERSION" ]; then
    echo "  ok       onnxruntime-node $version"
  else
    echo "  MISSING  onnxruntime-node $ORT_VERSION <- run: bash scripts/setup-gpu.sh"
    missing+=("onnxruntime-node@$ORT_VERSION")
  fi
  for lib in "${PROVIDER_LIBS[@]}"; do
    if [ -f "$BIN/$lib" ]; then echo "  ok       $lib"; else echo "  MISSING  $lib <- run: bash scripts/setup-gpu.sh"; missing+=("$lib"); fi
  done
  echo "setup-gpu: CUDA libraries on this host (ldconfig -p, LD_LIBRARY_PATH)"
  for entry in "${REQUIRED[@]}"; do report "$entry"; done
  if $driver; then
    report "$DRIVER"
    if [ -e /dev/nvidiactl ]; then
      echo "  ok       /dev/nvidiactl"
    else
      echo "  MISSING  /dev/nvidiactl  <- no NVIDIA GPU visible (driver not loaded, or a container started without --gpus)"
      missing+=(/dev/nvidiactl)
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-gpu: missing: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup-gpu: ready. Start the server with: NODE_OPTIONS=--conditions=t2r-cuda T2R_EXECUTION_PROVIDER=cuda npm start"
}

$check_only || install_runtime
check
