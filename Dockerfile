# syntax=docker/dockerfile:1
# t2r-serve, CPU image: the Fastify server (run from TypeScript with tsx), onnxruntime-node's
# bundled CPU build, and the PyTorch trainer (Debian's python3-torch) for conversion jobs.
#   docker build -t t2r-serve .
#   docker run -p 8080:8080 -v t2r-data:/data t2r-serve
FROM node:20-bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive

# Runtime: python3 + torch + numpy (+ OpenBLAS) for trainer/, CA certificates.
# Build-only: make and g++ (with python3, for node-gyp) for better-sqlite3's native addon.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-torch python3-numpy libopenblas0-pthread ca-certificates \
      make g++ \
 && rm -rf /var/lib/apt/lists/*

# package.json's `allowScripts` field (approves better-sqlite3 and esbuild, denies
# onnxruntime-node's CUDA download) is honoured from npm 11 on; node:20 ships npm 10.
RUN npm install -g npm@11 && npm cache clean --force

WORKDIR /app

# Dependencies first so the layer is reused while only sources change. Dev dependencies are
# kept: the server runs from TypeScript through tsx. ONNXRUNTIME_NODE_INSTALL=skip is a second
# guard against onnxruntime-node fetching CUDA binaries; its CPU build ships in the package.
COPY package.json package-lock.json .npmrc ./
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci && npm cache clean --force

COPY tsconfig.json ./
COPY src/ ./src/
COPY scripts/ ./scripts/
COPY trainer/ ./trainer/
COPY contract/ ./contract/
COPY models/ ./models/

# Run as the image's unprivileged `node` user (uid 1000). /data holds the SQLite database
# and other runtime state; models/ is writable so conversion jobs can publish into it.
RUN mkdir -p /data \
 && chown -R node:node /data /app/models

ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    PORT=8080 \
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

CMD ["npx", "tsx", "src/main.ts"]
