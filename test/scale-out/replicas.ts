// Two server replicas (real processes) sharing one real Redis, for the scale-out tests, and what
// those tests ask of them: session turns, state bytes, waiting on the servers' own answers.
import { cpSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { CHAT_MODEL, hfModelsDir } from '../helpers/hf-fixtures.ts'
import { startRedis, type RunningRedis } from '../helpers/redis.ts'
import { postJson, spawnServer } from '../helpers/server.ts'

export type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any -- response bodies vary by route
export type Replica = Awaited<ReturnType<typeof spawnServer>>

/** A short lease, so a killed replica's sessions are usable again within the test. */
export const LEASE_MS = 1500

let modelsDir: string | null = null
/** tiny-t2r (the default) and tiny-chat (a chat template), copied once per test file. */
function replicaModelsDir (): string {
  if (modelsDir !== null) return modelsDir
  const dir = mkdtempSync(join(tmpdir(), 't2r-replica-models-'))
  cpSync(join(tinyModelsDir(), 'tiny-t2r'), join(dir, 'tiny-t2r'), { recursive: true })
  cpSync(join(hfModelsDir(), CHAT_MODEL), join(dir, CHAT_MODEL), { recursive: true })
  modelsDir = dir
  return dir
}

export { CHAT_MODEL }

export async function startReplicas (redis: RunningRedis, count: number, env: Record<string, string> = {}): Promise<Replica[]> {
  const common = { MODELS_DIR: replicaModelsDir(), T2R_DEFAULT_MODEL: 'tiny-t2r', REDIS_URL: redis.url, T2R_SESSION_LEASE_MS: String(LEASE_MS), LOG_LEVEL: 'error', ...env }
  // One at a time: two model loads at once on a small machine only make both slower.
  const replicas: Replica[] = []
  for (let i = 0; i < count; i++) replicas.push(await spawnServer(common))
  return replicas
}

export { startRedis }

export async function json (res: Response | Promise<Response>): Promise<Json> { return await (await res).json() }

/** A greedy turn on a session; fails the test's expectations loudly if it was not a 200. */
export async function turn (url: string, id: string, prompt: string, maxTokens = 8): Promise<Json> {
  const res = await postJson(`${url}/v1/sessions/${id}/completions`, { prompt, max_tokens: maxTokens, temperature: 0 })
  const body = await res.json()
  if (res.status !== 200) throw new Error(`turn on ${id} at ${url}: ${res.status} ${JSON.stringify(body)}`)
  return body
}

/** A session's exported state without its header (which names the session): the tensors alone. */
export async function stateTensors (url: string, id: string): Promise<Buffer> {
  const blob = Buffer.from(await (await fetch(`${url}/v1/sessions/${id}/state`)).arrayBuffer())
  return blob.subarray(12 + blob.readUInt32LE(8))
}

/** Polls the server's own view of a session until `done` says so (or throws after `ms`). */
export async function waitForSession (url: string, id: string, done: (s: Json) => boolean, ms = 15_000): Promise<Json> {
  const deadline = Date.now() + ms
  for (;;) {
    const s = await json(fetch(`${url}/v1/sessions/${id}`))
    if (done(s)) return s
    if (Date.now() > deadline) throw new Error(`session ${id} never reached the expected state: ${JSON.stringify(s)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Polls /ready until it answers `status`. */
/** Polls /ready until its session store is reachable again (a Redis away leaves it 'degraded'). */
export async function waitForStore (url: string, ms = 15_000): Promise<Json> {
  const deadline = Date.now() + ms
  for (;;) {
    const res = await fetch(`${url}/ready`)
    const body = await res.json() as Json
    if (res.status === 200 && body.status === 'ready') return body
    if (Date.now() > deadline) throw new Error(`${url}/ready stayed ${res.status} ${JSON.stringify(body)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
