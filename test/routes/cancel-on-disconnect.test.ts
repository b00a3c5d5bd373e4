// Regression (llama.cpp's server has lost this more than once): a client that goes away stops its
// generation within a step. Checked from the outside: the active-sequence gauge drops to zero and
// the generated-token counter stops far short of max_new_tokens.
import http from 'node:http'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)
const MAX = 4000

async function active (): Promise<number> { return await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') }
async function generated (): Promise<number> { return await metricValue(srv.url, 't2r_generated_tokens_total', 'model="tiny-t2r"') || 0 }

async function until (cond: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline && !await cond();) await new Promise((resolve) => setImmediate(resolve))
}

/** The gauge drops to zero once the generation has ended; the token counter counts it then. */
async function settles (t: Test, before: number): Promise<void> {
  await until(async () => await active() === 0)
  t.equal(await active(), 0, 'no generation left running')
  const made = await generated() - before
  t.ok(made < MAX / 2, `stopped early: ${made} of ${MAX} tokens`)
}

/** Sends a request and destroys the socket once `ready` says so. */
function requestThenHangUp (path: string, body: object, readyAfterBytes: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let seen = 0
      res.on('data', (chunk: Buffer) => { seen += chunk.length; if (seen >= readyAfterBytes) { req.destroy(); resolve() } })
    })
    req.on('error', () => { resolve() })
    req.end(JSON.stringify(body))
    // Nothing is sent before the end: hang up once the server counts the generation as running.
    if (readyAfterBytes === 0) void until(async () => await active() === 1).then(() => { req.destroy(); resolve() })
  })
}

t.test('SSE (/generate_stream) client disconnects', async (t) => {
  const before = await generated()
  await requestThenHangUp('/generate_stream', { inputs: 'The', parameters: { max_new_tokens: MAX, ignore_eos: true } }, 1)
  await settles(t, before)
})

t.test('OpenAI stream client disconnects', async (t) => {
  const before = await generated()
  await requestThenHangUp('/v1/completions', { prompt: 'The', max_tokens: MAX, stream: true, ignore_eos: true }, 1)
  await settles(t, before)
})

t.test('non-streaming REST client disconnects', async (t) => {
  const before = await generated()
  await requestThenHangUp('/generate', { inputs: 'The', parameters: { max_new_tokens: MAX, ignore_eos: true } }, 0)
  await settles(t, before)
})

t.test('WebSocket client disconnects', async (t) => {
  const before = await generated()
  const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/stream`)
  await new Promise((resolve) => ws.once('open', resolve))
  ws.send(JSON.stringify({ type: 'generate', id: 'g', prompt: 'The', max_tokens: MAX, ignore_eos: true }))
  await new Promise((resolve) => ws.once('message', resolve))
  ws.terminate()
  await settles(t, before)
})
