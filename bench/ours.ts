// Our side of the benchmark: the server started in this process (real HTTP on a free port) and its
// models' engines driven directly. Greedy decode throughout; HTTP streams are TGI's SSE route.
import { mkdtempSync, rmSync } from 'node:fs'
import { setMaxListeners } from 'node:events'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../src/config.ts'
import { GREEDY } from '../src/engine/sampler.ts'
import type { GenerationResult } from '../src/generation/backend.ts'
import type { LoadedModel } from '../src/models/registry.ts'
import { buildServer } from '../src/server.ts'
import { meanStep } from './llama-cpp.ts'

export interface Ours {
  url: string
  model: (name: string) => LoadedModel
  close: () => Promise<void>
}

/** `spinning`: ONNX Runtime's pool threads spin between kernels (T2R_INTRA_OP_SPINNING). */
export async function startOurs (modelsDir: string, names: string[], threads: number, maxBatch: number, spinning = false): Promise<Ours> {
  const dataDir = mkdtempSync(join(tmpdir(), 't2r-bench-'))
  const server = await buildServer(loadConfig([], {
    MODELS_DIR: modelsDir,
    T2R_MODELS: names.join(','),
    T2R_DEFAULT_MODEL: names[0],
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    T2R_INTRA_OP_THREADS: String(threads),
    T2R_INTRA_OP_SPINNING: spinning ? '1' : '0',
    T2R_MAX_BATCH: String(maxBatch),
    T2R_CONVERSIONS: 'off',
    // A benchmark client is one address sending hundreds of requests, some queued behind 64 streams.
    T2R_RATE_LIMIT: '0',
    T2R_MAX_EVENT_LOOP_DELAY_MS: '0',
    T2R_MAX_QUEUE_SECONDS: '3600'
  }))
  await server.app.listen({ host: '127.0.0.1', port: 0 })
  await server.loadModels()
  return {
    url: `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`,
    model: (name) => {
      const m = server.services.registry.get(name)
      if (m === undefined) throw new Error(`model ${name} is not loaded`)
      return m
    },
    close: async () => { await server.close(); rmSync(dataDir, { recursive: true, force: true }) }
  }
}

/** One greedy generation on the engine; -> token arrival times (ms) and the result. Its end state
 * is discarded, as the server does for a request without a session, unless `keepState`. */
export async function engineRun (model: LoadedModel, inputIds: number[], maxNewTokens: number, from?: { position: number, state: Float32Array[] }, keepState = false): Promise<{ times: number[], result: GenerationResult }> {
  const times: number[] = []
  const result = await new Promise<GenerationResult>((resolve, reject) => {
    model.engine.submit({ inputIds, position: from?.position ?? 0, state: from?.state ?? null, params: GREEDY, seed: 0, maxNewTokens, stop: [], stopTokenIds: [], discardState: !keepState }, {
      token () { times.push(performance.now()) }, end: resolve, error: reject
    })
  })
  return { times, result }
}

/** One TGI SSE stream of `n` tokens (EOS ignored); -> tokens, total and first-token ms. `signal`
 * ends it early. The client is node:http counting frames in the raw bytes (no text decoding): on 2
 * cores a client shares the machine with the server it measures, so it should cost little. */
export async function httpStream (url: string, model: string, prompt: string, n: number, signal?: AbortSignal, onFirst?: () => void): Promise<{ tokens: number, ms: number, firstMs: number }> {
  const t0 = performance.now()
  const body = JSON.stringify({ inputs: prompt, parameters: { model, max_new_tokens: n, ignore_eos: true } })
  return await new Promise((resolve, reject) => {
    let tokens = 0
    let firstMs = 0
    const done = (): void => { resolve({ tokens, ms: performance.now() - t0, firstMs }) }
    const req = request(`${url}/generate_stream`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, signal }, (res) => {
      if (res.statusCode !== 200) {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { text += c })
        res.on('end', () => { reject(new Error(`${model}: /generate_stream answered ${res.statusCode}: ${text}`)) })
        return
      }
      // A frame starts with "data:" at the start of a line; the previous chunk's last bytes are
      // kept so a "data:" split between chunks still counts once.
      let tail = Buffer.from('\n')
      res.on('data', (chunk: Buffer) => {
        const buf = Buffer.concat([tail, chunk])
        for (let i = buf.indexOf(FRAME); i !== -1; i = buf.indexOf(FRAME, i + FRAME.length)) if (i + FRAME.length > tail.length) tokens++
        tail = buf.subarray(Math.max(0, buf.length - FRAME.length + 1))
        if (tokens > 0 && firstMs === 0) { firstMs = performance.now() - t0; onFirst?.() }
      })
      res.on('end', done)
      res.on('error', (err) => { if (signal?.aborted === true) done(); else reject(err) })
    })
    req.on('error', (err) => { if (signal?.aborted === true) done(); else reject(err) })
    req.end(body)
  })
}
const FRAME = Buffer.from('\ndata:')

export async function engineSingle (model: LoadedModel, ids: number[], n: number): Promise<number> {
  const { times } = await engineRun(model, ids, n)
  return (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000)
}

export async function httpSingle (url: string, model: string, prompt: string, n: number): Promise<number> {
  const r = await httpStream(url, model, prompt, n)
  return (r.tokens - 1) / ((r.ms - r.firstMs) / 1000)
}

/** Aggregate tokens/s of concurrent generations from their common start. */
export async function engineStreams (model: LoadedModel, prompts: number[][], n: number): Promise<number> {
  const t0 = performance.now()
  const runs = await Promise.all(prompts.map(async (p) => await engineRun(model, p, n)))
  return runs.reduce((a, r) => a + r.times.length, 0) / ((performance.now() - t0) / 1000)
}

export async function httpStreams (url: string, model: string, prompts: string[], n: number): Promise<number> {
  const t0 = performance.now()
  const runs = await Promise.all(prompts.map(async (p) => await httpStream(url, model, p, n)))
  return runs.reduce((a, r) => a + r.tokens, 0) / ((performance.now() - t0) / 1000)
}

/** Mean ms per decoded token at each position: the state filled from `corpus` by prefill up to
 * each position in turn (continuing the state), then `steps` greedy tokens timed there. */
export async function enginePositions (model: LoadedModel, corpus: number[], positions: number[], steps: number): Promise<Record<number, number>> {
  const out: Record<number, number> = {}
  let from: { position: number, state: Float32Array[] } | undefined
  let pending: number[] = []
  for (const p of [...positions].sort((a, b) => a - b)) {
    const at = (from?.position ?? 0) + pending.length
    const fill = [...pending, ...corpus.slice(at, Math.max(at, p))]
    const { times, result } = await engineRun(model, fill, steps + 1, from, true)
    out[p] = meanStep(times)
    from = { position: result.position, state: result.state }
    pending = result.pending
  }
  return out
}

/** Prefill tokens/s of `prompt` (time to its first token). */
export async function enginePrefill (model: LoadedModel, prompt: number[]): Promise<number> {
  const t0 = performance.now()
  const { times } = await engineRun(model, prompt, 1)
  return prompt.length / ((times[0] - t0) / 1000)
}

/** Time to first token (ms) of a new HTTP stream while `load` streams decode. */
export async function httpTtftUnderLoad (url: string, model: string, prompt: string, load: number, maxTokens: number): Promise<number> {
  const abort = new AbortController()
  // One signal ends every stream of the load: a listener each.
  setMaxListeners(load + 1, abort.signal)
  let started = 0
  let allStarted!: () => void
  const running = new Promise<void>((resolve) => { allStarted = resolve })
  const streams = Array.from({ length: load }, async (_, i) => await httpStream(url, model, `${prompt} ${i}`, maxTokens, abort.signal, () => { if (++started === load) allStarted() }))
  await running
  const probe = await httpStream(url, model, prompt, 1)
  abort.abort()
  await Promise.all(streams)
  return probe.firstMs
}
