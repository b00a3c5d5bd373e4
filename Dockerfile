# syntax=docker/dockerfile:1
# t2r-serve, CPU image, in two stages:
#   builder  all npm dependencies, `npm run build` (tsc: src/ -> dist/), then the dev dependencies
#            pruned away;
#   runtime  the compiled server, production node_modules, the PyTorch trainer (Debian's
#            python3-torch) for conversion jobs, the shipped models; run as `node` (uid 1000)
#            under tini, with no npm or tsx between tini and node.
#   docker build -t t2r-serve:cpu .          (Dockerfile.gpu builds on this tag)
#   docker run -p 8080:8080 -v t2r-data:/data t2r-serve:cpu
# Where Docker Hub cannot be reached, scripts/build-image.sh builds a stand-in base from Debian and
# npm packages and passes it as NODE_IMAGE (docs/deployment.md, "Building without Docker Hub").
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS builder

# An ARG, not ENV: it is for apt during the build and stays out of the image's environment.
ARG DEBIAN_FRONTEND=noninteractive

# python3, make and g++ are for node-gyp: better-sqlite3's native addon is compiled here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A build machine behind a TLS-inspecting proxy passes its CA bundle for npm's downloads (mounted
# at build time, see scripts/build-image.sh); it stays out of the image. Unset by default.
ARG NODE_EXTRA_CA_CERTS

# package.json's `allowScripts` field (approves better-sqlite3 and esbuild, denies
# onnxruntime-node's CUDA download) is honoured from npm 11 on; node:20 ships npm 10.
RUN npm install -g npm@11 && npm cache clean --force

WORKDIR /app

# Nothing may come from outside the npm and Debian registries:
# - ONNXRUNTIME_NODE_INSTALL=skip: a second guard against onnxruntime-node fetching CUDA
#   binaries (its CPU build ships in the package);
# - npm_config_build_from_source: better-sqlite3 compiles instead of trying to download a
#   prebuilt binary first;
# - npm_config_nodedir: node-gyp takes Node's headers from the base image (/usr/local/include/node)
#   instead of downloading them.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    npm_config_build_from_source=true \
    npm_config_nodedir=/usr/local \
    NPM_CONFIG_UPDATE_NOTIFIER=false

# Dependencies first so the layer is reused while only sources change.
COPY package.json package-lock.json .npmrc ./
RUN npm ci && npm cache clean --force

# The engine's direct ONNX Runtime binding (docs/design.md §10), with the builder's gcc.
COPY native/ ./native/
COPY scripts/build-native.sh ./scripts/
RUN bash scripts/build-native.sh && test -f native/build/ort_direct.node

COPY tsconfig.json tsconfig.build.json ./
COPY src/ ./src/
# Compile, then drop the dev dependencies (typescript, tsx, tap, ...) and the macOS and Windows
# builds of onnxruntime (~220 MB) that onnxruntime-node ships next to the Linux ones.
RUN npm run build \
 && npm prune --omit=dev \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v6/darwin node_modules/onnxruntime-node/bin/napi-v6/win32 \
 && npm cache clean --force


FROM ${NODE_IMAGE} AS runtime

ARG DEBIAN_FRONTEND=noninteractive

# python3 + torch + numpy (+ OpenBLAS) for trainer/ (conversion jobs), CA certificates, and tini:
# the container's PID 1, which forwards SIGTERM/SIGINT to the server and reaps the trainer's
# exited processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-torch python3-numpy libopenblas0-pthread ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

COPY --from=builder /app/package.json ./
COPY --from=builder /app/node_modules/ ./node_modules/
COPY --from=builder /app/dist/ ./dist/
COPY --from=builder /app/native/build/ ./native/build/
COPY trainer/ ./trainer/
COPY contract/ ./contract/
# models/ belongs to `node` so conversion jobs can publish into it (--chown: a `chown -R` in a
# later layer would store the models a second time). /data holds the SQLite database and other
# runtime state. /conversions is where the scale-out profile mounts the job folders that replicas
# and `t2r worker` share (T2R_CONVERSIONS_DIR); a fresh volume takes this owner.
COPY --chown=node:node models/ ./models/
RUN mkdir -p /data /conversions \
 && chown node:node /data /conversions

ENV PORT=8080 \
    HOST=0.0.0.0 \
    MODELS_DIR=/app/models \
    DATA_DIR=/data \
    PYTHONPATH=/app/trainer \
    PYTHONDONTWRITEBYTECODE=1

USER node
VOLUME /data
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Exec form, node the direct child of tini: `docker stop`'s SIGTERM reaches the server, which
# drains in-flight generations and exits 0 (test/deploy/sigterm.test.ts runs exactly this line).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
