// 429 with Retry-After when the queue is full; 503 while loading and while shutting down.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { metricValue, postJson, startServer } from '../helpers/server.ts'

const modelsDir = tinyModelsDir()

t.test('a full queue answers 429 with Retry-After, and accepts again once it drains', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_MAX_IN_FLIGHT: '2' } })
  t.teardown(srv.close)
  const long = [0, 1].map(async () => await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 3000, ignore_eos: true } }))
  while (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') !== 2) await new Promise((resolve) => setTimeout(resolve, 5))
  const res = await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 1 } })
  t.equal(res.status, 429)
  t.ok(Number(res.headers.get('retry-after')) >= 1)
  t.match(await res.json(), { error_type: 'overloaded' })
  const openai = await postJson(`${srv.url}/v1/completions`, { prompt: 'x', max_tokens: 1 })
  t.equal(openai.status, 429)
  t.match(await openai.json(), { error: { type: 'overloaded', code: 429 } })
  for (const r of await Promise.all(long)) t.equal(r.status, 200, 'work in flight is not lost')
  t.equal((await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 1 } })).status, 200)
})

t.test('503 while models load', async (t) => {
  const srv = await startServer({ modelsDir, loadModels: false })
  t.teardown(srv.close)
  t.equal((await fetch(`${srv.url}/health`)).status, 503)
  t.equal((await fetch(`${srv.url}/ready`)).status, 503)
  const res = await postJson(`${srv.url}/generate`, { inputs: 'x' })
  t.equal(res.status, 503)
  t.ok(res.headers.get('retry-after'))
  await srv.server.loadModels()
  t.equal((await fetch(`${srv.url}/ready`)).status, 200)
})

t.test('shutdown finishes the generation in flight and refuses new ones with 503', async (t) => {
  const srv = await startServer({ modelsDir })
  const inflight = postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 3000, ignore_eos: true, details: true } })
  while (await metricValue(srv.url, 't2r_active_sequences', 'model="tiny-t2r"') !== 1) await new Promise((resolve) => setTimeout(resolve, 5))
  const closing = srv.close()
  // Draining starts synchronously in close(): the listener is still open and answers 503.
  const refused = await postJson(`${srv.url}/generate`, { inputs: 'The' })
  t.equal(refused.status, 503)
  t.ok(refused.headers.get('retry-after'), 'with Retry-After')
  const done = await (await inflight).json()
  t.equal(done.details.generated_tokens, 3000, 'the in-flight generation completed')
  await closing
})
