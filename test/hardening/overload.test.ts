// Overload answers before any work and before a stream opens: 429 with Retry-After as a status,
// by the count of generations in flight and by how long requests queue for their first token.
import t from 'tap'
import WebSocket from 'ws'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

const modelsDir = tinyModelsDir()

async function until (cond: () => Promise<boolean>, ms = 60_000): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    if (await cond()) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return false
}

t.test('at the in-flight limit, streams get 429 with Retry-After before the stream starts', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_MAX_IN_FLIGHT: '2' } })
  t.teardown(srv.close)
  const long = [0, 1].map(async () => await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 3000, ignore_eos: true } }))
  t.ok(await until(async () => await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') === 2))
  for (const [path, body] of [
    ['/generate_stream', { inputs: 'The', parameters: { max_new_tokens: 5 } }],
    ['/v1/completions', { prompt: 'The', max_tokens: 5, stream: true }],
    ['/', { inputs: 'The', stream: true }]
  ] as const) {
    const res = await postJson(`${srv.url}${path}`, body)
    t.equal(res.status, 429, `${path}: a status, not an error event in a 200 stream`)
    t.ok(Number(res.headers.get('retry-after')) >= 1, `${path}: Retry-After`)
    t.match(res.headers.get('content-type'), /json/)
  }
  // A megabyte prompt is refused by admission (429), not tokenized first (which would say 422).
  const big = await postJson(`${srv.url}/generate`, { inputs: 'word '.repeat(200_000), parameters: { max_new_tokens: 1 } })
  t.equal(big.status, 429, 'admission comes before tokenization')
  t.ok(await metricValue(srv.url, 't2r_requests_refused_total', 'model="tiny-t2r",reason="in_flight"') >= 4, 'refusals are counted')
  for (const r of await Promise.all(long)) t.equal(r.status, 200, 'work in flight is not lost')
})

t.test('when requests queue longer than the bound, new ones get 429 until the queue moves', async (t) => {
  // The softmax model, prefilling a long prompt one token per step: a second request waits behind it.
  const srv = await startServer({ modelsDir, env: { T2R_DEFAULT_MODEL: 'tiny-base', T2R_PREFILL_CHUNK: '1', T2R_MAX_QUEUE_SECONDS: '1' } })
  t.teardown(srv.close)
  const head = postJson(`${srv.url}/v1/completions`, { model: 'tiny-base', prompt: Array.from({ length: 16_000 }, (_, i) => i % 8000), max_tokens: 1 })
  t.ok(await until(async () => await metricValue(srv.url, 't2r_queue_waiting', 'model="tiny-base"') === 1))
  const behind = postJson(`${srv.url}/v1/completions`, { model: 'tiny-base', prompt: 'The', max_tokens: 1 })
  const slow = await until(async () => await metricValue(srv.url, 't2r_queue_oldest_wait_seconds', 'model="tiny-base"') > 1.2, 120_000)
  t.ok(slow, 'the server reports a request waiting over a second')
  const refused = await postJson(`${srv.url}/v1/completions`, { model: 'tiny-base', prompt: 'The', max_tokens: 1 })
  t.equal(refused.status, 429)
  t.match(await refused.json(), { error: { type: 'overloaded', message: /wait/ } })
  t.ok(Number(refused.headers.get('retry-after')) >= 1)
  t.equal((await head).status, 200, 'queued work is not lost')
  t.equal((await behind).status, 200)
  t.equal((await postJson(`${srv.url}/v1/completions`, { model: 'tiny-base', prompt: 'The', max_tokens: 1 })).status, 200, 'admits again once the queue is empty')
})

t.test('a WebSocket generate at the limit gets a 429 error event and the socket stays usable', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_MAX_IN_FLIGHT: '1' } })
  t.teardown(srv.close)
  const long = postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 3000, ignore_eos: true } })
  t.ok(await until(async () => await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') === 1))
  const ws = new WebSocket(`${srv.url.replace('http', 'ws')}/v1/stream`)
  await new Promise((resolve) => ws.once('open', resolve))
  ws.send(JSON.stringify({ type: 'generate', id: 'a', prompt: 'The', max_tokens: 3 }))
  const event = JSON.parse(String(await new Promise((resolve) => ws.once('message', resolve))))
  t.match(event, { type: 'error', id: 'a', error: { code: 429, type: 'overloaded' } })
  ws.close()
  t.equal((await long).status, 200)
})
