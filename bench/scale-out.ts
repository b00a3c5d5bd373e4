// npx tsx bench/scale-out.ts: what sharing sessions in Redis costs, printed as markdown tables.
// Run on an otherwise idle machine; nothing here is asserted by tests. It starts its own Redis
// (Debian's redis-server, as the tests do) and its own servers on loopback ports.
//   1. session continue latency (first token, and the whole 1-token turn with its write-through),
//      disk store vs Redis store, over HTTP on the shipped T2R model
//   2. the store round trip (acquire = read the state; release = write-through) at the shipped
//      model's state size and at a 125 M-parameter T2R model's (12 layers × 12 heads × feature 64 ×
//      head_dim 64), measured through the SessionStore API: no 125 M model is run, its state is
//      simulated with random values of that shape
//   3. aggregate tokens/s of session turns, 1 replica vs 2 replicas (each turn to the next replica)
//   4. Redis bytes per session (MEMORY USAGE of its keys)
import { rmSync, mkdtempSync, readFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import pino from 'pino'
import { loadConfig } from '../src/config.ts'
import { expectedState } from '../src/contract/onnx-io.ts'
import { parseManifest, stateElements, type Manifest } from '../src/models/manifest.ts'
import { buildServer } from '../src/server.ts'
import { DiskSessionStore } from '../src/sessions/disk-store.ts'
import { RedisSessionStore } from '../src/sessions/redis-store.ts'
import type { SessionStore } from '../src/sessions/store.ts'
import { startRedis } from '../test/helpers/redis.ts'
import { spawnServer } from '../test/helpers/server.ts'

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'models' },
    model: { type: 'string', default: 'sotu-t2r' },
    turns: { type: 'string', default: '40' },
    rounds: { type: 'string', default: '40' },
    clients: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '20' },
    tokens: { type: 'string', default: '32' }
  }
})
const TURNS = Number(values.turns)
const ROUNDS = Number(values.rounds)
const CLIENTS = Number(values.clients)
const SECONDS = Number(values.seconds)
const TOKENS = Number(values.tokens)
const PROMPT = 'Fellow-Citizens of the Senate and House of Representatives:'

const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(s.length * p))] }
const ms = (x: number): string => x.toFixed(2)
const postJson = async (url: string, body: unknown): Promise<Response> => await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

const redis = await startRedis()
const client = new Redis(redis.url)
const scratch = mkdtempSync(join(tmpdir(), 't2r-bench-scale-'))
const log = pino({ level: 'silent' })

/** One streamed 1-token turn: ms to its first token, and ms to its end (after the write-through). */
async function timedTurn (url: string, id: string): Promise<{ first: number, total: number }> {
  const t0 = performance.now()
  const res = await postJson(`${url}/v1/sessions/${id}/completions`, { prompt: ' and', max_tokens: 1, temperature: 0, ignore_eos: true, stream: true })
  if (res.status !== 200) throw new Error(`turn: ${res.status} ${await res.text()}`)
  let first = 0
  for await (const chunk of res.body!) {
    if (first === 0 && Buffer.from(chunk as Uint8Array).toString().includes('"text"')) first = performance.now() - t0
  }
  return { first, total: performance.now() - t0 }
}

async function startInProcess (redisUrl: string | null): Promise<{ url: string, close: () => Promise<void> }> {
  const server = await buildServer(loadConfig([], {
    MODELS_DIR: values.models, T2R_MODELS: values.model, T2R_DEFAULT_MODEL: values.model, DATA_DIR: join(scratch, redisUrl === null ? 'disk' : 'redis'),
    LOG_LEVEL: 'silent', ...(redisUrl === null ? {} : { REDIS_URL: redisUrl })
  }))
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  await server.loadModels()
  return { url: `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`, close: server.close }
}

/** One-token turns on a disk-store server and a Redis-store server, alternated so both see the same machine load. */
async function continueLatency (): Promise<Record<'disk' | 'redis', { first: number[], total: number[], sessionId: string }>> {
  const servers = { disk: await startInProcess(null), redis: await startInProcess(redis.url) }
  const runs = { disk: { first: [] as number[], total: [] as number[], sessionId: '' }, redis: { first: [] as number[], total: [] as number[], sessionId: '' } }
  for (const store of ['disk', 'redis'] as const) {
    runs[store].sessionId = ((await (await postJson(`${servers[store].url}/v1/sessions`, { prompt: PROMPT })).json()) as { id: string }).id
    for (let i = 0; i < 3; i++) await timedTurn(servers[store].url, runs[store].sessionId) // warm-up
  }
  for (let i = 0; i < TURNS; i++) {
    for (const store of ['disk', 'redis'] as const) {
      const r = await timedTurn(servers[store].url, runs[store].sessionId)
      runs[store].first.push(r.first)
      runs[store].total.push(r.total)
    }
  }
  await servers.disk.close()
  await servers.redis.close()
  return runs
}

function manifestOf125m (shipped: Manifest): Manifest {
  const m = { ...shipped, name: 't2r-125m-state', dim: 768, layers: 12, heads: 12, head_dim: 64, feature_dim: 64, ffn_dim: 3072 }
  return parseManifest({ ...m, state: expectedState(m) }, '125 M state shape')
}

/** acquire (state read) and release with a new state (write-through) through the store API. */
async function storeRoundTrip (store: SessionStore, manifest: Manifest, sessions: number): Promise<{ read: number[], write: number[], ids: string[] }> {
  const ids = await Promise.all(Array.from({ length: sessions }, async () => (await store.create(manifest.name, 'bench')).id))
  const tensors = manifest.state.map((spec) => Float32Array.from({ length: stateElements(spec, 0) }, () => Math.random() - 0.5))
  for (const id of ids) { await store.acquire(id); await store.release(id, { position: 100, pending: [1], tensors }) }
  const read: number[] = []
  const write: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const id = ids[i % ids.length]
    let t0 = performance.now()
    const state = await store.acquire(id)
    read.push(performance.now() - t0)
    t0 = performance.now()
    await store.release(id, { position: state.position + 1, pending: [1], tensors: state.tensors })
    write.push(performance.now() - t0)
  }
  return { read, write, ids }
}

async function memoryUsage (id: string): Promise<number> {
  let n = 0
  for (const k of [`t2r:s:{${id}}:state`, `t2r:s:{${id}}:meta`]) n += Number(await client.call('MEMORY', 'USAGE', k, 'SAMPLES', '0'))
  return n
}

async function aggregateTokensPerSecond (replicas: number): Promise<{ tokensPerSecond: number, turns: number }> {
  const threads = String(Math.max(1, Math.floor(availableParallelism() / replicas)))
  const env = { MODELS_DIR: values.models, T2R_MODELS: values.model, T2R_DEFAULT_MODEL: values.model, REDIS_URL: redis.url, T2R_INTRA_OP_THREADS: threads, LOG_LEVEL: 'error', T2R_RATE_LIMIT: '0', T2R_MAX_EVENT_LOOP_DELAY_MS: '0' } // one benchmark client, many requests
  const servers: Array<Awaited<ReturnType<typeof spawnServer>>> = []
  for (let i = 0; i < replicas; i++) servers.push(await spawnServer(env))
  let next = 0
  const pick = (): string => servers[next++ % servers.length].url
  const ids = await Promise.all(Array.from({ length: CLIENTS }, async () => ((await (await postJson(`${pick()}/v1/sessions`, { prompt: PROMPT })).json()) as { id: string }).id))
  let tokens = 0
  let turns = 0
  const end = performance.now() + SECONDS * 1000
  const t0 = performance.now()
  await Promise.all(ids.map(async (id) => {
    while (performance.now() < end) {
      const res = await postJson(`${pick()}/v1/sessions/${id}/completions`, { prompt: ' and', max_tokens: TOKENS, temperature: 0, ignore_eos: true })
      if (res.status !== 200) throw new Error(`turn: ${res.status} ${await res.text()}`)
      tokens += ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens
      turns++
    }
  }))
  const seconds = (performance.now() - t0) / 1000
  for (const s of servers) await s.kill('SIGTERM')
  return { tokensPerSecond: tokens / seconds, turns }
}

try {
  const shipped = parseManifest(JSON.parse(readFileSync(join(values.models, values.model, 'model.json'), 'utf8')), values.model)
  const big = manifestOf125m(shipped)
  const bytesOf = (m: Manifest): number => m.state.reduce((n, spec) => n + stateElements(spec, 0) * 4, 0)

  console.log(`\n## Session continue latency over HTTP, ${values.model} (${bytesOf(shipped)} state bytes), ${TURNS} one-token turns, ms\n`)
  console.log('| store | first token p50 | first token p95 | whole turn (with write-through) p50 | p95 |')
  console.log('| --- | --- | --- | --- | --- |')
  const latency = await continueLatency()
  for (const [name, r] of Object.entries(latency)) {
    console.log(`| ${name} | ${ms(pct(r.first, 0.5))} | ${ms(pct(r.first, 0.95))} | ${ms(pct(r.total, 0.5))} | ${ms(pct(r.total, 0.95))} |`)
  }

  console.log(`\n## Store round trip through the SessionStore API, ${ROUNDS} rounds, ms (the 125 M row is a simulated state of that shape, not a model run)\n`)
  console.log('| state | bytes | store | acquire (read) p50 | p95 | release (write-through) p50 | p95 |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  const redisSessionIds: Record<string, string> = {}
  for (const m of [shipped, big]) {
    const manifestOf = (name: string): Manifest | undefined => (name === m.name ? m : undefined)
    const stores: Array<[string, SessionStore, number]> = [
      ['disk (resident in memory)', new DiskSessionStore({ dir: join(scratch, `rt-${m.name}-res`), chatTurnsDir: join(scratch, `rt-${m.name}-res-chat`), ttlSeconds: 3600, maxResident: 256, manifestOf }), 2],
      ['disk (read from its file)', new DiskSessionStore({ dir: join(scratch, `rt-${m.name}-file`), chatTurnsDir: join(scratch, `rt-${m.name}-file-chat`), ttlSeconds: 3600, maxResident: 1, manifestOf }), 2],
      ['redis', new RedisSessionStore({ url: redis.url, ttlSeconds: 3600, leaseMs: 10_000, manifestOf, log }), 2]
    ]
    for (const [name, store, sessions] of stores) {
      const r = await storeRoundTrip(store, m, sessions)
      if (name === 'redis') redisSessionIds[m.name] = r.ids[0]
      console.log(`| ${m.name === big.name ? '125 M T2R (simulated)' : m.name} | ${bytesOf(m)} | ${name} | ${ms(pct(r.read, 0.5))} | ${ms(pct(r.read, 0.95))} | ${ms(pct(r.write, 0.5))} | ${ms(pct(r.write, 0.95))} |`)
      await store.close()
    }
  }

  console.log('\n## Redis bytes per session (MEMORY USAGE of its state and metadata keys)\n')
  console.log('| session | state bytes | Redis bytes |')
  console.log('| --- | --- | --- |')
  console.log(`| ${values.model} (served) | ${bytesOf(shipped)} | ${await memoryUsage(latency.redis.sessionId)} |`)
  console.log(`| 125 M T2R (simulated) | ${bytesOf(big)} | ${await memoryUsage(redisSessionIds[big.name])} |`)

  console.log(`\n## Aggregate tokens/s, ${CLIENTS} clients each continuing its own session (${TOKENS} tokens a turn, each turn to the next replica), ${SECONDS} s, Redis store, ${availableParallelism()} cores split among the replicas\n`)
  console.log('| replicas | tokens/s | turns |')
  console.log('| --- | --- | --- |')
  for (const n of [1, 2]) {
    const r = await aggregateTokensPerSecond(n)
    console.log(`| ${n} | ${r.tokensPerSecond.toFixed(1)} | ${r.turns} |`)
  }
} finally {
  client.disconnect()
  await redis.stop()
  rmSync(scratch, { recursive: true, force: true })
}
