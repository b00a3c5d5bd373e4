// npm run bench:self: serving figures on the shipped models, printed as a markdown table and written
// to bench/results.json. Run on an otherwise idle machine; timings are never asserted in tests.
//   1. engine vs HTTP (SSE) single-stream tokens/s          (issue: HTTP ≥ 90% of the engine)
//   2. 32 concurrent HTTP streams vs one                    (issue: aggregate ≥ 5× single)
//   3. per-token latency at position 64 vs 2,048, T2R beside softmax (T2R within 10%)
//   4. state bytes per session at 64 and 4,096 tokens, T2R beside softmax
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { addressesOf } from '../src/corpus/sotu.ts'
import type { LoadedModel } from '../src/models/registry.ts'
import { median } from './llama-cpp.ts'
import { engineRun, httpStream as stream, startOurs } from './ours.ts'

const { values } = parseArgs({ options: { models: { type: 'string', default: 'models' }, t2r: { type: 'string', default: 'sotu-t2r' }, softmax: { type: 'string', default: 'sotu-base' }, tokens: { type: 'string', default: '256' } } })
const N = Number(values.tokens)
const srv = await startOurs(values.models, [values.t2r, values.softmax], 2, 32)
const t2r = srv.model(values.t2r)
const softmax = srv.model(values.softmax)
const corpus = addressesOf('test').map((a) => a.text).join('\n')
const httpStream = async (prompt: string, n: number): Promise<{ tokens: number, ms: number, firstMs: number }> => await stream(srv.url, t2r.name, prompt, n)

const prompt = 'Fellow-Citizens of the Senate and House of Representatives:'
const promptIds = await t2r.tokenizer.encode(prompt)
await engineRun(t2r, promptIds, 32) // warm up
await httpStream(prompt, 32)

// 1. Engine vs HTTP, single stream: decode tokens/s after the first token.
const eng = await engineRun(t2r, promptIds, N)
const engineTps = (N - 1) / ((eng.times[N - 1] - eng.times[0]) / 1000)
const http1 = await httpStream(prompt, N)
const httpTps = (N - 1) / ((http1.ms - http1.firstMs) / 1000)

// 2. 32 concurrent HTTP streams.
async function decodeStats (): Promise<{ steps: number, seconds: number, rows: number }> {
  const text = await (await fetch(`${srv.url}/metrics`)).text()
  const get = (re: RegExp): number => Number(text.match(re)?.[1] ?? 0)
  return {
    steps: get(new RegExp(`t2r_ort_step_duration_seconds_count\\{model="${t2r.name}",kind="decode"\\} (\\S+)`)),
    seconds: get(new RegExp(`t2r_ort_step_duration_seconds_sum\\{model="${t2r.name}",kind="decode"\\} (\\S+)`)),
    rows: get(new RegExp(`t2r_decode_batch_size_sum\\{model="${t2r.name}"\\} (\\S+)`))
  }
}
const before = await decodeStats()
const t0 = performance.now()
const many = await Promise.all(Array.from({ length: 32 }, async (_, i) => await httpStream(`${prompt} ${i}`, N)))
const wallS = (performance.now() - t0) / 1000
const aggregateTps = many.reduce((a, r) => a + r.tokens, 0) / wallS
const after = await decodeStats()
const decode32 = { steps: after.steps - before.steps, ortSeconds: after.seconds - before.seconds, meanBatch: (after.rows - before.rows) / (after.steps - before.steps), wallSeconds: wallS }

// 3. Per-token latency at positions 64 and 2,048 (greedy decode of 64 tokens after a prefill).
const ids = await t2r.tokenizer.encode(corpus)
async function latencyAt (model: LoadedModel, position: number): Promise<number> {
  const { times } = await engineRun(model, ids.slice(0, position), 65)
  return median(times.slice(1).map((t, i) => t - times[i]))
}
const latency: Record<string, Record<string, number>> = {}
for (const model of [t2r, softmax]) {
  latency[model.name] = { 64: await latencyAt(model, 64), 2048: await latencyAt(model, 2048) }
}

// 4. Session state bytes after 64 and 4,096 tokens.
const stateBytes: Record<string, Record<string, number>> = {}
for (const model of [t2r, softmax]) {
  stateBytes[model.name] = {}
  for (const n of [64, 4096]) {
    const { result } = await engineRun(model, ids.slice(0, n), 0, undefined, true)
    stateBytes[model.name][n] = result.state.reduce((a, s) => a + s.byteLength, 0)
  }
}

const results = {
  date: new Date().toISOString(),
  machine: `${(await import('node:os')).cpus()[0].model}, ${(await import('node:os')).availableParallelism()} cores`,
  tokens_per_stream: N,
  single_stream: { engine_tokens_per_s: engineTps, http_sse_tokens_per_s: httpTps, http_over_engine: httpTps / engineTps },
  concurrency_32: { aggregate_tokens_per_s: aggregateTps, over_single_http: aggregateTps / httpTps, decode: decode32 },
  per_token_latency_ms: latency,
  t2r_latency_2048_over_64: latency[t2r.name][2048] / latency[t2r.name][64],
  softmax_latency_2048_over_64: latency[softmax.name][2048] / latency[softmax.name][64],
  state_bytes: stateBytes
}
writeFileSync(join('bench', 'results.json'), JSON.stringify(results, null, 2) + '\n')
const f = (x: number, d = 1): string => x.toFixed(d)
console.log(`| figure | value |
| --- | --- |
| single stream, engine (tokens/s) | ${f(engineTps)} |
| single stream, HTTP SSE (tokens/s) | ${f(httpTps)} (${f(100 * httpTps / engineTps)}% of engine) |
| 32 concurrent HTTP streams, aggregate (tokens/s) | ${f(aggregateTps)} (${f(aggregateTps / httpTps, 2)}× single) |
| … their decode steps: count, mean rows, ORT time / wall time | ${decode32.steps}, ${f(decode32.meanBatch)}, ${f(decode32.ortSeconds, 2)} s / ${f(decode32.wallSeconds, 2)} s |
| ${t2r.name} ms/token at 64 → 2,048 | ${f(latency[t2r.name][64], 2)} → ${f(latency[t2r.name][2048], 2)} (${f(100 * (results.t2r_latency_2048_over_64 - 1))}%) |
| ${softmax.name} ms/token at 64 → 2,048 | ${f(latency[softmax.name][64], 2)} → ${f(latency[softmax.name][2048], 2)} (${f(100 * (results.softmax_latency_2048_over_64 - 1))}%) |
| ${t2r.name} state bytes at 64 / 4,096 tokens | ${stateBytes[t2r.name][64]} / ${stateBytes[t2r.name][4096]} |
| ${softmax.name} KV bytes at 64 / 4,096 tokens | ${stateBytes[softmax.name][64]} / ${stateBytes[softmax.name][4096]} |`)
await srv.close()
