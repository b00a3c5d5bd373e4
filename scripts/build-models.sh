#!/usr/bin/env bash
# Builds each shipped model folder's generated files from its committed checkpoint.safetensors:
# model.onnx (the step graph), decode.onnx (its one-token-per-row form) and parity.json (PyTorch's
# reference the server checks them against), with the trainer's exporter (docs/design.md §7). Git
# keeps only the checkpoint: an exported graph is ~30 MB that every exporter change would add to
# the history again.
#
# Idempotent: a folder is rebuilt only when a file is missing or its .build-stamp (a hash of the
# checkpoint, the exporter's sources and contract/onnx-io.json) differs. scripts/setup.sh runs it;
# so can anyone after changing the exporter. Usage: bash scripts/build-models.sh [models-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${1:-models}
PYTHON=${PYTHON:-/usr/bin/python3}
EXPORTER=(trainer/t2r/export.py trainer/t2r/step_graph.py trainer/t2r/model.py trainer/t2r/checkpoint.py
  trainer/t2r/safetensors.py trainer/t2r/contract.py trainer/t2r/cli.py contract/onnx-io.json contract/parity.schema.json)
GENERATED=(model.onnx decode.onnx parity.json)

for checkpoint in "$MODELS"/*/checkpoint.safetensors; do
  [ -e "$checkpoint" ] || continue
  dir=$(dirname "$checkpoint")
  stamp=$(cat "$checkpoint" "${EXPORTER[@]}" | sha256sum | cut -d' ' -f1)
  fresh=1
  for f in "${GENERATED[@]}"; do [ -f "$dir/$f" ] || fresh=0; done
  if [ "$fresh" = 1 ] && [ "$(cat "$dir/.build-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "build-models: $dir is up to date"
    continue
  fi
  echo "build-models: exporting $dir"
  # Written beside their destination and renamed into place: a folder never holds a half-written graph.
  tmp="$dir/.build-$$"
  rm -rf "$tmp"
  mkdir "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  PYTHONPATH=trainer "$PYTHON" -W ignore -m t2r export --checkpoint "$checkpoint" --out "$tmp/model.onnx" \
    --decode-out "$tmp/decode.onnx" --parity-out "$tmp/parity.json" >/dev/null
  for f in "${GENERATED[@]}"; do mv "$tmp/$f" "$dir/$f"; done
  rm -rf "$tmp"
  trap - EXIT
  echo "$stamp" >"$dir/.build-stamp"
done
