#!/usr/bin/env bash
# Slow check of the CPU image (part of .ci/run): builds it (scripts/build-image.sh, which installs
# its tools), then starts the server inside it with the image's own command, user, working
# directory and environment, and checks it over HTTP from outside: /health, the image's own
# HEALTHCHECK command, /generate on the shipped model, that node runs as uid 1000 as tini's child
# with production dependencies only, and `docker stop` semantics (SIGTERM to tini while a
# generation is in flight: the generation completes, exit 0 within 10 s, the port closes).
# No container runtime can start a container on this project's machines (docs/deployment.md,
# "Building without Docker Hub"), so the server runs under `buildah run --isolation chroot`: the
# image's root file system and user, the host's network and PID namespace. That step is probed
# and, when it fails, reported loudly as SKIPPED; everything else must pass.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/t2r-serve:cpu}
GPU_IMAGE=${GPU_IMAGE:-localhost/t2r-serve:gpu}
export IMAGE GPU_IMAGE
work=$(mktemp -d /tmp/t2r-check-image.XXXXXX)
container=""
server_pid=""

passed=0
skipped=0
step () { echo "==> $* ($SECONDS s)"; }
ok () { passed=$((passed + 1)); echo "ok $passed - $* ($SECONDS s)"; }
fail () {
  echo "check-image: FAILED: $*" >&2
  [ -f "$work/server.log" ] && tail -n 20 "$work/server.log" >&2
  echo "check-image: $passed passed, 1 failed, $skipped skipped"
  exit 1
}
cleanup () {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
  [ -n "$container" ] && buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "build"
bash scripts/build-image.sh

step "image config"
# image_field EXPR [IMAGE]: one line per element of EXPR, JavaScript over the image's inspect object `i`.
image_field () {
  podman image inspect "${2:-$IMAGE}" \
    | node -e 'const i = JSON.parse(require("node:fs").readFileSync(0, "utf8"))[0]; for (const v of [].concat(eval(process.argv[1]) ?? [])) console.log(v)' "$1"
}
mapfile -t argv < <(image_field '[...(i.Config.Entrypoint ?? []), ...(i.Config.Cmd ?? [])]')
mapfile -t healthcheck < <(image_field 'i.Healthcheck?.Test?.[0] === "CMD" ? i.Healthcheck.Test.slice(1) : []')
user=$(image_field 'i.Config.User')
workdir=$(image_field 'i.Config.WorkingDir')
[ ${#healthcheck[@]} -gt 0 ] || fail "the image has no exec-form HEALTHCHECK"
[ "${argv[0]}" = /usr/bin/tini ] || fail "the image's command does not start with tini: ${argv[*]}"
command_and_user='[...(i.Config.Entrypoint ?? []), ...(i.Config.Cmd ?? []), i.Config.User].join(" ")'
ok "$IMAGE runs '${argv[*]}' as $user in $workdir, with an exec-form HEALTHCHECK"
if podman image exists "$GPU_IMAGE"; then
  [ "$(image_field "$command_and_user" "$GPU_IMAGE")" = "$(image_field "$command_and_user")" ] \
    || fail "$GPU_IMAGE does not run the same command as the same user as $IMAGE"
  ok "$GPU_IMAGE runs the same command as the same user"
else
  skipped=$((skipped + 1))
  echo "skip - $GPU_IMAGE was not built (build-image.sh: its CUDA base image is not present)"
fi

step "probe: podman run (a real container)"
if probe=$(podman run --rm --pull=never --network host "$IMAGE" node --version 2>&1); then
  echo "podman run works on this machine ($probe); the checks below still use buildah run"
else
  skipped=$((skipped + 1))
  echo "################################################################################"
  echo "# SKIPPED: starting the image as a container (podman run). It failed with:"
  { echo "$probe" | grep '^Error' || echo "$probe" | tail -n 3; } | sed 's/^/#   /'
  echo "# The checks below run the image's command in its root file system as its user with"
  echo "# buildah run --isolation chroot instead: no PID namespace (tini is not PID 1), no"
  echo "# cgroup limits, no port publishing. See docs/deployment.md."
  echo "################################################################################"
fi

port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })')
url="http://127.0.0.1:$port"
container=$(buildah from --pull=never "$IMAGE")
# The image listens on 0.0.0.0, where the server refuses to run without API keys: one key for the
# checks (an admin key, as an operator's first key would be), sent with every request below.
key="admin:check-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
auth="authorization: Bearer ${key#admin:}"
run_in_image () { buildah run --isolation chroot --network host --user "$user" --workingdir "$workdir" --env "PORT=$port" --env "T2R_API_KEYS=$key" "$container" -- "$@"; }

step "start: ${argv[*]} as $user on port $port"
run_in_image "${argv[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  curl -fsS -o /dev/null "$url/health" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || fail "the server exited before /health answered"
  sleep 0.2
done
curl -fsS -o /dev/null "$url/health" || fail "/health did not answer 200 within 120 s"
ok "/health 200"

run_in_image "${healthcheck[@]}" || fail "the image's HEALTHCHECK command exited non-zero"
ok "HEALTHCHECK command exits 0"

node_pid=$(ss -Htlnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
[ -n "$node_pid" ] || fail "no process listens on $port"
tini_pid=$(ps -o ppid= -p "$node_pid" | tr -d ' ')
[ "$(ps -o comm= -p "$node_pid")" = node ] || fail "the listening process is $(ps -o comm= -p "$node_pid"), not node"
[ "$(ps -o comm= -p "$tini_pid")" = tini ] || fail "node's parent is $(ps -o comm= -p "$tini_pid"), not tini"
[ "$(stat -c %u "/proc/$node_pid")" = 1000 ] || fail "node runs as uid $(stat -c %u "/proc/$node_pid"), not 1000"
ok "node (pid $node_pid, uid 1000) is tini's (pid $tini_pid) direct child"

run_in_image sh -c 'test -d node_modules/fastify && test ! -e node_modules/typescript && test ! -e node_modules/tsx && test ! -e node_modules/tap' \
  || fail "node_modules in the image is not production-only"
ok "node_modules: production dependencies only"

binding=$(run_in_image node -e "import('/app/dist/engine/ort-session.js').then((m) => { const b = m.bindingInUse(); console.log(JSON.stringify({ binding: b.binding, reason: b.reason })) })") \
  || fail "the engine's ONNX Runtime binding could not be read in the image"
case "$binding" in *'"binding":"direct"'*) ;; *) fail "the image's engine does not use the direct ONNX Runtime binding: $binding" ;; esac
ok "the engine runs ONNX Runtime through native/ort_direct.c: $binding"

unauthorized=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/models")
[ "$unauthorized" = 401 ] || fail "/v1/models without a key answered $unauthorized, not 401"
ok "a request without the API key: 401"

models=$(curl -fsS "$url/v1/models" -H "$auth")
for model in sotu-t2r sotu-base; do
  echo "$models" | grep -q "\"id\":\"$model\"" || fail "/v1/models does not list $model: $models"
done
generated=$(curl -fsS "$url/generate" -H "$auth" -H 'content-type: application/json' \
  -d '{"inputs":"Fellow-Citizens of the Senate and House of Representatives:","parameters":{"max_new_tokens":20,"model":"sotu-t2r"}}')
node -e 'const r = JSON.parse(process.argv[1]); if (typeof r.generated_text !== "string" || r.generated_text.trim() === "") process.exit(1)' "$generated" \
  || fail "/generate: $generated"
ok "/generate on sotu-t2r: $generated"

# docker stop: SIGTERM to the container's PID 1 (tini), which passes it to node.
curl -sS -N "$url/v1/completions" -H "$auth" -H 'content-type: application/json' \
  -d '{"model":"sotu-t2r","prompt":"Fellow-Citizens","max_tokens":200,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' \
  >"$work/stream.txt" &
stream_pid=$!
for _ in $(seq 1 600); do grep -q '^data: ' "$work/stream.txt" 2>/dev/null && break; sleep 0.05; done
grep -q '^data: ' "$work/stream.txt" || fail "the streamed completion sent nothing"
kill -TERM "$tini_pid"
stopped_at=$SECONDS
exit_code=0
timeout 10 tail --pid="$server_pid" -f /dev/null || fail "still running 10 s after SIGTERM: docker stop would SIGKILL it"
wait "$server_pid" || exit_code=$?
server_pid=""
wait "$stream_pid" || fail "the streamed completion failed"
[ "$exit_code" = 0 ] || fail "exit status $exit_code after SIGTERM"
grep -q '"completion_tokens":200' "$work/stream.txt" || fail "the completion in flight at SIGTERM did not finish: $(tail -c 300 "$work/stream.txt")"
grep -v '^$' "$work/stream.txt" | tail -n 1 | grep -qx 'data: \[DONE\]' || fail "the stream did not end with [DONE]"
curl -s -o /dev/null "$url/health" && fail "port $port still answers after exit"
grep -q '"signal":"SIGTERM"' "$work/server.log" || fail "the server did not log the SIGTERM"
ok "SIGTERM: in-flight completion finished (200 tokens), exit 0 after $((SECONDS - stopped_at)) s, port closed"

echo "check-image: $SECONDS s"
echo "check-image: $passed passed, 0 failed, $skipped skipped"
