// OpenAI-compatible /v1/completions and /v1/models.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

t.test('a completion carries usage and finish_reason', async (t) => {
  const res = await postJson(`${srv.url}/v1/completions`, { model: 'tiny-t2r', prompt: 'The Congress', max_tokens: 7, temperature: 0 })
  t.equal(res.status, 200)
  const body = await res.json()
  t.equal(body.object, 'text_completion')
  t.equal(body.model, 'tiny-t2r')
  t.equal(body.choices[0].finish_reason, 'length')
  t.equal(body.usage.completion_tokens, 7)
  t.equal(body.usage.total_tokens, body.usage.prompt_tokens + 7)
})

t.test('logprobs: one entry per token with the requested alternatives', async (t) => {
  const body = await (await postJson(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 4, temperature: 0, logprobs: 3 })).json()
  const lp = body.choices[0].logprobs
  t.equal(lp.tokens.length, 4)
  t.equal(lp.tokens.join(''), body.choices[0].text)
  t.ok(lp.top_logprobs.every((o: object) => Object.keys(o).length >= 1 && Object.keys(o).length <= 3))
  t.ok(lp.token_logprobs.every((x: number) => x <= 0))
})

t.test('stream: chunks, then a finish chunk, a usage chunk and [DONE]; same text as unstreamed', async (t) => {
  const req = { prompt: 'Fellow citizens', max_tokens: 9, temperature: 0.8, seed: 5 }
  const events = await readSse(await postJson(`${srv.url}/v1/completions`, { ...req, stream: true, stream_options: { include_usage: true } }))
  t.equal(events[events.length - 1].data, '[DONE]')
  const usage = events[events.length - 2].data
  t.equal(usage.usage.completion_tokens, 9)
  const finish = events[events.length - 3].data
  t.equal(finish.choices[0].finish_reason, 'length')
  const text = events.slice(0, -2).map((e) => e.data.choices[0].text).join('')
  const plain = await (await postJson(`${srv.url}/v1/completions`, req)).json()
  t.equal(text, plain.choices[0].text)
})

t.test('errors use the OpenAI shape and name the field', async (t) => {
  let res = await postJson(`${srv.url}/v1/completions`, { prompt: 'x', temperature: 3 })
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { param: 'temperature', type: 'validation' } })
  res = await postJson(`${srv.url}/v1/completions`, { prompt: 'x', n: 2 })
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { param: 'n' } })
  res = await postJson(`${srv.url}/v1/completions`, { model: 'missing-model', prompt: 'x' })
  t.equal(res.status, 404)
  t.match(await res.json(), { error: { param: 'model', message: /missing-model/ } })
  res = await postJson(`${srv.url}/v1/completions`, { prompt: [1, 2, 99999] })
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { param: 'prompt' } })
})

t.test('GET /v1/models lists both models with their architecture', async (t) => {
  const body = await (await fetch(`${srv.url}/v1/models`)).json()
  t.same(body.data.map((m: { id: string }) => m.id).sort(), ['tiny-base', 'tiny-t2r'])
  t.same(body.data.find((m: { id: string }) => m.id === 'tiny-t2r').architecture, 't2r')
})
