// `docker stop` without Docker: builds dist/ with `npm run build`, starts exactly the command the
// image runs (the Dockerfile's ENTRYPOINT + CMD, from the repository root, which is laid out like
// the image's WORKDIR) on a fixture model, and sends that process SIGTERM, as `docker stop` does
// to a container's PID 1. A generation in flight must complete, the process must exit 0 before
// Docker's default 10 s grace period would end in SIGKILL, and the port must stop answering.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import t from 'tap'
import { ROOT, tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson } from '../helpers/server.ts'
import { imageCommand } from './dockerfile.ts'

/** `docker stop`'s default --time: how long Docker waits after SIGTERM before it sends SIGKILL. */
const DOCKER_STOP_GRACE_MS = 10_000

const cpu = imageCommand(join(ROOT, 'Dockerfile'))

t.test('the image runs node under tini, with no npm, npx, tsx or shell in between', async (t) => {
  t.same(cpu.argv, ['/usr/bin/tini', '--', 'node', 'dist/main.js'])
  for (const wrapper of ['npm', 'npx', 'tsx', 'sh', 'bash']) {
    t.notOk(cpu.argv.some((arg) => basename(arg) === wrapper), `no ${wrapper} in ${JSON.stringify(cpu.argv)}`)
  }
  t.same(imageCommand(join(ROOT, 'Dockerfile.gpu')).argv, cpu.argv, 'the GPU image runs the same command')
})

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address() as { port: number }; s.close(() => { resolve(port) }) })
  })
}

t.test('SIGTERM to the image command: in-flight generation completes, exit 0, port closed', async (t) => {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  const modelsDir = tinyModelsDir()
  const dataDir = mkdtempSync(join(tmpdir(), 't2r-sigterm-'))
  t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`

  const [program, ...args] = cpu.argv
  const child = spawn(program, args, {
    cwd: ROOT,
    // TINI_SUBREAPER: outside a container tini is not PID 1; as a subreaper it reaps orphans as
    // PID 1 would, and does not warn that it cannot.
    env: { ...process.env, TINI_SUBREAPER: '1', PORT: String(port), HOST: '127.0.0.1', MODELS_DIR: modelsDir, DATA_DIR: dataDir, T2R_DEFAULT_MODEL: 'tiny-t2r', T2R_INTRA_OP_THREADS: '1', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
    // Its own process group, standing for the container: SIGTERM goes to the process alone, as
    // `docker stop` signals PID 1 alone; SIGKILL goes to the group, as the container is killed whole.
    detached: true
  })
  const killContainer = (): void => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch { /* already gone */ } }
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  t.teardown(killContainer)

  let healthy = false
  while (!healthy && child.exitCode === null) {
    healthy = await fetch(`${url}/health`).then((res) => res.status === 200, () => false)
    if (!healthy) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(healthy, '/health answered 200 before the process exited')

  const res = await postJson(`${url}/v1/completions`, { prompt: 'Fellow-Citizens of the Senate', max_tokens: 500, ignore_eos: true, stream: true, stream_options: { include_usage: true } })
  t.equal(res.status, 200)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = decoder.decode((await reader.read()).value)

  child.kill('SIGTERM')
  const timer = setTimeout(killContainer, DOCKER_STOP_GRACE_MS)
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value)
  const result = await exited
  clearTimeout(timer)

  t.same(result, { code: 0, signal: null }, 'exited 0 on its own, before SIGKILL')
  const events = text.split('\n\n').filter((frame) => frame.startsWith('data: ')).map((frame) => frame.slice(6))
  t.equal(events.at(-1), '[DONE]', 'the stream ended normally')
  const usage = JSON.parse(events.at(-2) as string) as { usage: { completion_tokens: number } }
  t.equal(usage.usage.completion_tokens, 500, 'the generation in flight at SIGTERM ran to max_tokens')
  await t.rejects(fetch(`${url}/health`), 'the port no longer answers')
})
