// Sessions continue from their state: generating in turns equals generating in one call.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

const srv = await startServer({ modelsDir: tinyModelsDir() })
t.teardown(srv.close)

async function session (prompt?: string, model = 'tiny-t2r'): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON body
  const res = await postJson(`${srv.url}/v1/sessions`, { model, ...(prompt !== undefined ? { prompt } : {}) })
  t.equal(res.status, 201)
  return await res.json()
}
async function turn (id: string, body: object): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON body
  const res = await postJson(`${srv.url}/v1/sessions/${id}/completions`, { temperature: 0, ...body })
  t.equal(res.status, 200)
  return await res.json()
}

for (const model of ['tiny-t2r', 'tiny-base']) {
  t.test(`${model}: three turns of a session equal one greedy call over the same tokens`, async (t) => {
    const prompt = 'The state of the Union'
    const whole = (await (await postJson(`${srv.url}/v1/completions`, { model, prompt, max_tokens: 30, temperature: 0 })).json()).choices[0].text
    const s = await session(undefined, model)
    const a = await turn(s.id, { prompt, max_tokens: 10 })
    const b = await turn(s.id, { max_tokens: 12 })
    const c = await turn(s.id, { max_tokens: 8 })
    t.equal(a.choices[0].text + b.choices[0].text + c.choices[0].text, whole)
    t.equal(b.usage.prompt_tokens, 1, 'a continuation feeds only the pending token, not the history')
    const info = await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()
    t.equal(info.tokens_consumed + info.pending_tokens, a.usage.prompt_tokens + 30)
  })
}

t.test('a session created with a prompt continues from it', async (t) => {
  const prompt = 'Fellow-Citizens of the Senate and House of Representatives:'
  const whole = (await (await postJson(`${srv.url}/v1/completions`, { prompt, max_tokens: 12, temperature: 0 })).json()).choices[0].text
  const s = await session(prompt)
  t.ok(s.tokens_consumed > 0)
  t.equal((await turn(s.id, { max_tokens: 12 })).choices[0].text, whole)
})

t.test('T2R session state is constant-size; the softmax KV cache grows', async (t) => {
  const r = await session(undefined, 'tiny-t2r')
  await turn(r.id, { prompt: 'The', max_tokens: 5 })
  const small = (await (await fetch(`${srv.url}/v1/sessions/${r.id}`)).json()).state_bytes
  await turn(r.id, { max_tokens: 40 })
  t.equal((await (await fetch(`${srv.url}/v1/sessions/${r.id}`)).json()).state_bytes, small)
  const s = await session(undefined, 'tiny-base')
  await turn(s.id, { prompt: 'The', max_tokens: 5 })
  const before = (await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()).state_bytes
  await turn(s.id, { max_tokens: 40 })
  t.ok((await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()).state_bytes > before)
})

t.test('fork copies the state: both branches continue identically, independently', async (t) => {
  const s = await session('The Congress')
  const f = await (await postJson(`${srv.url}/v1/sessions/${s.id}/fork`, {})).json()
  t.not(f.id, s.id)
  t.equal(f.tokens_consumed, s.tokens_consumed)
  const a = await turn(s.id, { max_tokens: 10 })
  const b = await turn(f.id, { max_tokens: 10 })
  t.equal(a.choices[0].text, b.choices[0].text)
  await turn(s.id, { max_tokens: 5 })
  const fi = await (await fetch(`${srv.url}/v1/sessions/${f.id}`)).json()
  const si = await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()
  t.equal(si.tokens_consumed - fi.tokens_consumed, 5, 'the fork did not move with the original')
})

t.test('unknown session 404, busy session 409, deleted session gone', async (t) => {
  t.equal((await fetch(`${srv.url}/v1/sessions/sess_nope`)).status, 404)
  t.equal((await postJson(`${srv.url}/v1/sessions/sess_nope/completions`, { max_tokens: 1 })).status, 404)
  const s = await session('The')
  const long = postJson(`${srv.url}/v1/sessions/${s.id}/completions`, { max_tokens: 2000, ignore_eos: true })
  while (!(await (await fetch(`${srv.url}/v1/sessions/${s.id}`)).json()).busy) await new Promise((resolve) => setImmediate(resolve))
  const busy = await postJson(`${srv.url}/v1/sessions/${s.id}/completions`, { max_tokens: 1 })
  t.equal(busy.status, 409)
  t.match(await busy.json(), { error: { type: 'conflict' } })
  t.equal((await fetch(`${srv.url}/v1/sessions/${s.id}`, { method: 'DELETE' })).status, 409)
  t.equal((await long).status, 200)
  t.equal((await fetch(`${srv.url}/v1/sessions/${s.id}`, { method: 'DELETE' })).status, 200)
  t.equal((await fetch(`${srv.url}/v1/sessions/${s.id}`)).status, 404)
})

t.test('a bare POST /v1/sessions (no body) creates an empty session', async (t) => {
  const res = await fetch(`${srv.url}/v1/sessions`, { method: 'POST' })
  t.equal(res.status, 201)
  t.match(await res.json(), { object: 'session', tokens_consumed: 0, pending_tokens: 0 })
})
