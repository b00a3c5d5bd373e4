// A seeded fuzz over every route and every WebSocket message type, bounded to about a minute:
// random and mutated bodies, wrong content types, malformed JSON and binary frames. Whatever arrives:
// no 5xx, no crash, /health answers 200 throughout, and two greedy streams decoding beside it all
// get exactly the text they get on a quiet server.
import t from 'tap'
import WebSocket from 'ws'
import { Rng } from '../../src/engine/rng.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer } from '../helpers/server.ts'

const SEED = Number(process.env.T2R_FUZZ_SEED ?? 20261129)
const BUDGET_MS = Number(process.env.T2R_FUZZ_MS ?? 40_000)
// The trainer is swapped for a command that fails at once: a fuzzed body that is a valid
// conversion request becomes a failed job, not twenty minutes of training.
const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_PYTHON: '/bin/false', T2R_MAX_IN_FLIGHT: '512' } })
t.teardown(srv.close)

const rng = new Rng(SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]
const int = (lo: number, hi: number): number => lo + Math.floor(rng.next() * (hi - lo + 1))

const STRINGS = ['', ' ', 'The', 'a'.repeat(300), '\u0000\u0001', '<|endoftext|>', '\ud800', '😀'.repeat(50), '../../etc/passwd', 'sess_nope', 'tiny-t2r', 'tiny-base', '%00', 'x'.repeat(70_000), 'http://127.0.0.1/']
const NUMBERS = [0, -0, 1, -1, 0.5, 2, 3, 10, 100, 4096, 4097, 1e-38, 5e-324, 1e308, -1e308, 2 ** 53, 2 ** 31, -(2 ** 31), 0.9999999999999999, 1.0000000000000002]

function value (depth = 0): unknown {
  switch (int(0, depth > 2 ? 3 : 6)) {
    case 0: return pick(STRINGS)
    case 1: return pick(NUMBERS)
    case 2: return pick([true, false, null])
    case 3: return int(-5, 9000)
    case 4: return Array.from({ length: int(0, 4) }, () => value(depth + 1))
    case 5: return Object.fromEntries(Array.from({ length: int(0, 4) }, () => [pick(['inputs', 'prompt', 'type', 'id', 'max_tokens', 'x', '__proto__', 'constructor']), value(depth + 1)]))
    default: return Array.from({ length: int(1, 8) }, () => int(0, 9000))
  }
}

/** A valid body of the route's kind, with some fields replaced, dropped or added. */
function mutate (body: Record<string, unknown>): unknown {
  if (rng.next() < 0.1) return value()
  const out: Record<string, unknown> = structuredClone(body)
  for (let i = int(0, 3); i > 0; i--) {
    const keys = Object.keys(out)
    const r = rng.next()
    if (r < 0.5 && keys.length > 0) out[pick(keys)] = value()
    else if (r < 0.7 && keys.length > 0) delete out[pick(keys)]
    else out[pick(['temperature', 'top_p', 'top_k', 'typical_p', 'repetition_penalty', 'frequency_penalty', 'presence_penalty', 'seed', 'stop', 'logprobs', 'max_tokens', 'stream', 'echo', 'session_id', 'model', 'do_sample', 'extra'])] = value()
  }
  return out
}

const sampling = (): Record<string, unknown> => ({ max_tokens: int(0, 24), temperature: pick([0, 0.7, 1.5]), top_p: pick([0.5, 1]), top_k: pick([0, 5]), seed: int(0, 99) })
const sessions: string[] = ['sess_nope']

type Call = () => Promise<Response>
const calls: Array<() => Call> = [
  () => () => postJson(`${srv.url}/generate`, mutate({ inputs: 'The', parameters: { max_new_tokens: int(0, 24), ...pick([{}, { do_sample: true, temperature: 0.8 }, { top_n_tokens: 3, details: true }]) } })),
  () => () => postJson(`${srv.url}/generate_stream`, mutate({ inputs: 'Fellow', parameters: { max_new_tokens: int(1, 24) } })),
  () => () => postJson(`${srv.url}/`, mutate({ inputs: 'We', stream: pick([true, false]), parameters: { max_new_tokens: int(1, 8) } })),
  () => () => postJson(`${srv.url}/v1/completions`, mutate({ prompt: pick(['The', [1, 2, 3], ['x']]), stream: pick([true, false]), ...sampling() })),
  () => () => postJson(`${srv.url}/v1/sessions`, mutate({ model: 'tiny-t2r', prompt: 'The Union' })),
  () => () => postJson(`${srv.url}/v1/sessions/${pick(sessions)}/completions`, mutate({ prompt: ' and', ...sampling() })),
  () => () => postJson(`${srv.url}/v1/sessions/${pick(sessions)}/fork`, {}),
  () => () => fetch(`${srv.url}/v1/sessions/${pick(sessions)}${pick(['', '/state'])}`),
  () => () => fetch(`${srv.url}/v1/sessions/${pick([...sessions, '..%2F..', 'a'.repeat(100)])}`, { method: 'DELETE' }),
  () => () => fetch(`${srv.url}/v1/sessions/${pick(sessions)}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(Array.from({ length: int(0, 300) }, () => int(0, 255))) }),
  () => () => postJson(`${srv.url}/v1/conversions`, mutate({ source_model: 'tiny-base', name: `fz${int(0, 1e6)}`, steps: 1, transfer_steps: 0, batch_size: 1, sequence_length: 8, corpus: pick([{ type: 'text', text: 'The Union. '.repeat(20) }, { type: 'file', path: '../x' }, { type: 'sotu' }]) })),
  () => () => fetch(`${srv.url}/v1/conversions/${pick(['conv_nope', 'x'])}`, { method: pick(['GET', 'DELETE']) }),
  () => () => fetch(`${srv.url}${pick(['/info', '/health', '/ready', '/metrics', '/v1/models', '/v1/sessions', '/v1/conversions', '/nope', '/v1/stream'])}`),
  () => () => fetch(`${srv.url}${pick(['/generate', '/v1/completions', '/v1/sessions'])}`, { method: 'POST', headers: { 'content-type': pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream']) }, body: pick(['{', '{"inputs":', 'null', '[]', '"x"', '{"inputs":"a","parameters":{"max_new_tokens":1e999}}', 'a=b']) })
]

t.test('fuzzed requests: no 5xx, health throughout, neighbours untouched', async (t) => {
  const neighbourBody = (i: number) => ({ inputs: `Neighbour number ${i}`, parameters: { max_new_tokens: 400, ignore_eos: true } })
  const quiet = await Promise.all([0, 1].map(async (i) => (await (await postJson(`${srv.url}/generate`, neighbourBody(i))).json()).generated_text as string))

  const health: number[] = []
  let fuzzing = true
  const healthLoop = (async () => {
    while (fuzzing) {
      health.push((await fetch(`${srv.url}/health`)).status)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  })()
  const neighbours = [0, 1].map(async (i) => await readSse(await postJson(`${srv.url}/generate_stream`, neighbourBody(i))))

  const statuses = new Map<number, number>()
  const fiveHundreds: string[] = []
  let requests = 0
  let wsMessages = 0
  const deadline = Date.now() + BUDGET_MS
  const worker = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const make = pick(calls)()
      const res = await make().catch((err: Error) => ({ status: -1, text: async () => err.message, json: async () => ({}) }) as unknown as Response)
      requests++
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
      const text = await res.text().catch(() => '')
      if (res.status >= 500 || res.status === -1) fiveHundreds.push(`${res.status} ${text.slice(0, 200)}`)
      const id = /"id":"(sess_[0-9a-f]+)"/.exec(text)?.[1]
      if (res.status === 201 && id !== undefined && sessions.length < 50) sessions.push(id)
    }
  }
  const wsWorker = async (): Promise<void> => {
    while (Date.now() < deadline) {
      const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/stream`)
      ws.on('error', () => {})
      await new Promise((resolve) => { ws.once('open', resolve); ws.once('close', resolve) })
      const errors: unknown[] = []
      ws.on('message', (d) => { const m = JSON.parse(String(d)); if (m.type === 'error' && m.error.code >= 500) errors.push(m) })
      for (let i = int(1, 12); i > 0 && ws.readyState === ws.OPEN; i--) {
        const r = rng.next()
        if (r < 0.1) ws.send(Buffer.from([int(0, 255), int(0, 255)]))
        else if (r < 0.2) ws.send(pick(['{', 'null', '[]', '""', '{"type":"cancel"}']))
        else if (r < 0.35) ws.send(JSON.stringify({ type: 'cancel', id: pick(['a', 'b', '']) }))
        else ws.send(JSON.stringify(mutate({ type: 'generate', id: pick(['a', 'b', 'c']), prompt: 'The', session_id: pick(sessions), ...sampling() })))
        wsMessages++
        await new Promise((resolve) => setTimeout(resolve, int(0, 20)))
      }
      if (rng.next() < 0.5) ws.terminate()
      else ws.close()
      fiveHundreds.push(...errors.map((e) => `ws ${JSON.stringify(e).slice(0, 200)}`))
    }
  }
  await Promise.all([...Array.from({ length: 6 }, worker), wsWorker(), wsWorker()])
  fuzzing = false
  await healthLoop
  const streams = await Promise.all(neighbours)

  t.comment(`seed ${SEED}: ${requests} requests, ${wsMessages} WebSocket messages; statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.ok(requests > 100, 'the fuzz ran')
  t.same(fiveHundreds, [], 'no 5xx and no dropped connection')
  t.ok(health.length > 10 && health.every((s) => s === 200), `/health answered 200 all along (${health.length} checks)`)
  streams.forEach((events, i) => {
    const last = events.at(-1)?.data
    t.equal(last?.details?.generated_tokens, 400, `neighbour ${i} got all its tokens`)
    t.equal(last?.generated_text, quiet[i], `neighbour ${i}'s greedy text is what a quiet server gives`)
  })
  t.same(Object.fromEntries(srv.server.services.registry.failures), {}, 'no model fell out of service')
})
