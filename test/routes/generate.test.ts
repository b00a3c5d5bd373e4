// TGI-compatible generation over real HTTP against a real (tiny) model.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

t.test('POST /generate returns text and details', async (t) => {
  const res = await postJson(`${srv.url}/generate`, { inputs: 'The Congress', parameters: { max_new_tokens: 8, details: true } })
  t.equal(res.status, 200)
  const body = await res.json()
  t.type(body.generated_text, 'string')
  t.equal(body.details.generated_tokens, 8)
  t.equal(body.details.finish_reason, 'length')
  t.equal(body.details.tokens.length, 8)
  t.equal(body.details.tokens.map((x: { text: string }) => x.text).join(''), body.generated_text)
})

t.test('greedy is deterministic and a seeded sample repeats; another seed differs', async (t) => {
  const gen = async (parameters: object): Promise<string> => (await (await postJson(`${srv.url}/generate`, { inputs: 'Fellow citizens', parameters: { max_new_tokens: 24, ...parameters } })).json()).generated_text
  t.equal(await gen({}), await gen({}))
  const a = await gen({ do_sample: true, temperature: 1.5, seed: 11 })
  t.equal(a, await gen({ do_sample: true, temperature: 1.5, seed: 11 }))
  t.not(a, await gen({ do_sample: true, temperature: 1.5, seed: 12 }))
})

t.test('stop sequences end the text before them', async (t) => {
  const full = (await (await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 30 } })).json()).generated_text as string
  const stop = full.slice(10, 13)
  const res = await (await postJson(`${srv.url}/generate`, { inputs: 'The', parameters: { max_new_tokens: 30, stop: [stop], details: true } })).json()
  t.equal(res.generated_text, full.slice(0, full.indexOf(stop)))
  t.equal(res.details.finish_reason, 'stop_sequence')
})

t.test('POST /generate_stream sends one event per token, the last with the full text', async (t) => {
  const res = await postJson(`${srv.url}/generate_stream`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 } })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /text\/event-stream/)
  const events = await readSse(res)
  t.equal(events.length, 6)
  const last = events[events.length - 1].data
  t.equal(last.details.finish_reason, 'length')
  t.equal(last.generated_text, events.map((e) => e.data.token.text).join(''))
  const plain = await (await postJson(`${srv.url}/generate`, { inputs: 'The Congress', parameters: { max_new_tokens: 6 } })).json()
  t.equal(last.generated_text, plain.generated_text, 'streamed text equals the non-streamed text')
})

t.test('bad input: 422 names the field, 400 for malformed JSON, 413 for an oversized body, 404 unknown model', async (t) => {
  let res = await postJson(`${srv.url}/generate`, { inputs: 'x', parameters: { temperature: -1 } })
  t.equal(res.status, 422)
  let body = await res.json()
  t.match(body, { error: /temperature/, error_type: 'validation' })
  res = await postJson(`${srv.url}/generate`, { inputs: 'x', parameters: { max_new_tokens: 100000 } })
  t.equal(res.status, 422)
  t.match((await res.json()).error, /max_new_tokens/)
  res = await postJson(`${srv.url}/generate`, { inputs: 'x', parameters: { top_p: 1.5 } })
  t.equal(res.status, 422)
  res = await postJson(`${srv.url}/generate`, { parameters: {} })
  t.equal(res.status, 422)
  t.match((await res.json()).error, /inputs/)
  res = await postJson(`${srv.url}/generate`, { inputs: 'x', parameters: { max_tokens: 3 } })
  t.equal(res.status, 422)
  t.match((await res.json()).error, /max_tokens/, 'an unknown field is named')
  res = await fetch(`${srv.url}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs": "x",' })
  t.equal(res.status, 400)
  t.match(await res.json(), { error_type: 'invalid_request_error' })
  res = await postJson(`${srv.url}/generate`, { inputs: 'x'.repeat(5 * 1024 * 1024) })
  t.equal(res.status, 413)
  res = await postJson(`${srv.url}/generate`, { inputs: 'x', parameters: { model: 'nope' } })
  t.equal(res.status, 404)
  body = await res.json()
  t.match(body.error, /nope/)
})

t.test('GET /info and /health describe the server', async (t) => {
  const info = await (await fetch(`${srv.url}/info`)).json()
  t.equal(info.model_id, 'tiny-t2r')
  t.equal(info.architecture, 't2r')
  t.equal((await fetch(`${srv.url}/health`)).status, 200)
})

t.test('the softmax model is servable through the same routes', async (t) => {
  const res = await postJson(`${srv.url}/generate`, { inputs: 'The Congress', parameters: { model: 'tiny-base', max_new_tokens: 5, details: true } })
  t.equal(res.status, 200)
  t.equal((await res.json()).details.generated_tokens, 5)
})
