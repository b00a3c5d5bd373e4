// Two replicas (real processes) sharing sessions through one real Redis: any replica continues any
// session exactly as one process would, and a session generates on one replica at a time.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { readSse, postJson, startServer } from '../helpers/server.ts'
import { sseEvents } from '../helpers/sse.ts'
import { as, json as jsonOf, KEY_A, KEY_B, KEYS_ENV } from '../helpers/tenants.ts'
import { CHAT_MODEL, json, startRedis, startReplicas, stateTensors, turn, waitForSession, type Json } from './replicas.ts'

const redis = await startRedis()
t.teardown(redis.stop)
const [a, b] = await startReplicas(redis, 2)
t.teardown(async () => { await a.kill('SIGTERM'); await b.kill('SIGTERM') })

const PROMPT = 'Fellow-Citizens of the Senate'

t.test('a session continued on the other replica gives what one process gives', async (t) => {
  const one = await startServer({ modelsDir: tinyModelsDir() }) // disk store, one process
  t.teardown(one.close)
  const alone = await json(postJson(`${one.url}/v1/sessions`, { prompt: PROMPT }))
  const aloneTurns = [await turn(one.url, alone.id, ' and House', 12), await turn(one.url, alone.id, ' of the', 12)]

  const shared = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  const first = await turn(a.url, shared.id, ' and House', 12)
  const second = await turn(b.url, shared.id, ' of the', 12)
  t.equal(first.choices[0].text, aloneTurns[0].choices[0].text)
  t.equal(second.choices[0].text, aloneTurns[1].choices[0].text, 'the turn on B continues the state A wrote')
  const onA = await json(fetch(`${a.url}/v1/sessions/${shared.id}`))
  t.equal(onA.tokens_consumed, (await json(fetch(`${one.url}/v1/sessions/${alone.id}`))).tokens_consumed, 'A sees the turn B made')
  t.ok((await stateTensors(a.url, shared.id)).equals(await stateTensors(one.url, alone.id)), 'the same state bytes')
})

t.test('a fork made on A continues on B as its source does on A', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  await turn(a.url, s.id, ' and House', 6)
  const fork = await json(postJson(`${a.url}/v1/sessions/${s.id}/fork`, {}))
  t.not(fork.id, s.id)
  const onFork = await turn(b.url, fork.id, ' of', 10)
  const onSource = await turn(a.url, s.id, ' of', 10)
  t.equal(onFork.choices[0].text, onSource.choices[0].text)
})

t.test('a state exported from A and imported on B continues identically', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  const blob = Buffer.from(await (await fetch(`${a.url}/v1/sessions/${s.id}/state`)).arrayBuffer())
  t.equal(blob.subarray(0, 4).toString(), 'T2RS')
  const target = await json(postJson(`${b.url}/v1/sessions`, {}))
  const put = await fetch(`${b.url}/v1/sessions/${target.id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(blob) })
  t.equal(put.status, 200)
  t.equal((await put.json()).tokens_consumed, s.tokens_consumed)
  t.equal((await turn(b.url, target.id, ' and', 10)).choices[0].text, (await turn(a.url, s.id, ' and', 10)).choices[0].text)
})

t.test('a session generating on one replica is refused (409) on both while it runs, then free', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  const client = new AbortController()
  const stream = await postJson(`${a.url}/v1/sessions/${s.id}/completions`, { max_tokens: 4096, temperature: 0, ignore_eos: true, stream: true }, { signal: client.signal })
  t.equal(stream.status, 200)
  const events = sseEvents(stream)
  await events.next() // the generation has its first token: it holds the session
  const onB = await postJson(`${b.url}/v1/sessions/${s.id}/completions`, { prompt: ' and', max_tokens: 4, temperature: 0 })
  const onA = await postJson(`${a.url}/v1/sessions/${s.id}/completions`, { prompt: ' and', max_tokens: 4, temperature: 0 })
  t.equal(onB.status, 409, 'the other replica answers 409')
  t.match(await onB.json(), { error: { type: 'conflict', param: 'session_id' } })
  t.equal(onA.status, 409, 'the same replica answers 409 too')
  t.equal((await json(fetch(`${b.url}/v1/sessions/${s.id}`))).busy, true, 'B sees it busy')
  t.equal((await postJson(`${b.url}/v1/sessions/${s.id}/fork`, {})).status, 201, 'a fork reads the last written state meanwhile')
  t.equal((await fetch(`${b.url}/v1/sessions/${s.id}`, { method: 'DELETE' })).status, 409, 'no delete while it generates')
  const blob = await fetch(`${b.url}/v1/sessions/${s.id}/state`)
  t.equal(blob.status, 200, 'an export reads the last written state meanwhile')
  const put = await fetch(`${b.url}/v1/sessions/${s.id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(await blob.arrayBuffer()) })
  t.equal(put.status, 409, 'no import while it generates')
  client.abort() // the client goes away: A cancels the generation, stores what it made and frees the session
  const after = await waitForSession(b.url, s.id, (x) => x.busy === false)
  t.ok(after.tokens_consumed > s.tokens_consumed, 'released at the end, with the cancelled turn\'s tokens stored')
  t.ok((await turn(b.url, s.id, ' and', 4)).choices[0].text.length > 0, 'B generates on it afterwards')
})

t.test('a replica that stalls past its lease cannot overwrite the turn another replica stored since', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  const stream = await postJson(`${a.url}/v1/sessions/${s.id}/completions`, { max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true })
  t.equal(stream.status, 200)
  const events = sseEvents(stream)
  await events.next() // A holds the lease
  a.signal('SIGSTOP') // A stalls: it stops renewing, its lease expires
  let onB: Json
  try {
    await waitForSession(b.url, s.id, (x) => x.busy === false)
    onB = await turn(b.url, s.id, ' and', 4)
  } finally {
    a.signal('SIGCONT')
  }
  t.equal(onB.usage.completion_tokens, 4, 'B takes the session once A\'s lease expired')
  const rest: unknown[] = []
  for await (const e of events) rest.push(e.data)
  t.notOk(rest.includes('[DONE]'), 'A does not report its turn as done')
  t.match(rest.at(-1), { error: { message: /lease expired while generating/ } })
  const after = await json(fetch(`${b.url}/v1/sessions/${s.id}`))
  t.equal(after.tokens_consumed + after.pending_tokens, s.tokens_consumed + onB.usage.prompt_tokens + onB.usage.completion_tokens, 'the session holds B\'s turn, not A\'s')
})

t.test('concurrent generations on one session from both replicas: exactly one 409', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, { prompt: PROMPT }))
  const body = { prompt: ' and', max_tokens: 300, temperature: 0, ignore_eos: true }
  const [ra, rb] = await Promise.all([postJson(`${a.url}/v1/sessions/${s.id}/completions`, body), postJson(`${b.url}/v1/sessions/${s.id}/completions`, body)])
  t.same([ra.status, rb.status].sort(), [200, 409])
  const won = ra.status === 200 ? await ra.json() : await rb.json()
  const after = await json(fetch(`${a.url}/v1/sessions/${s.id}`))
  t.equal(after.tokens_consumed + after.pending_tokens, s.tokens_consumed + won.usage.prompt_tokens + won.usage.completion_tokens, 'only the winner\'s turn is in the state')
})

t.test('delete on one replica is seen by the other; a chat continues across replicas', async (t) => {
  const s = await json(postJson(`${a.url}/v1/sessions`, {}))
  t.equal((await fetch(`${b.url}/v1/sessions/${s.id}`, { method: 'DELETE' })).status, 200)
  t.equal((await fetch(`${a.url}/v1/sessions/${s.id}`)).status, 404)
  t.equal((await postJson(`${a.url}/v1/sessions/${s.id}/completions`, { prompt: 'x', max_tokens: 2 })).status, 404)
  t.notOk((await json(fetch(`${a.url}/v1/sessions`))).data.some((x: { id: string }) => x.id === s.id), 'gone from the list')

  const chat = await json(postJson(`${a.url}/v1/sessions`, { model: CHAT_MODEL }))
  const messages = [{ role: 'user', content: 'What is the state of the Union?' }]
  const first = await postJson(`${a.url}/v1/chat/completions`, { model: CHAT_MODEL, session_id: chat.id, messages, max_tokens: 6, temperature: 0 })
  t.equal(first.status, 200)
  const reply = (await first.json()).choices[0].message.content
  const next = [...messages, { role: 'assistant', content: reply }, { role: 'user', content: 'And the economy?' }]
  const second = await postJson(`${b.url}/v1/chat/completions`, { model: CHAT_MODEL, session_id: chat.id, messages: next, max_tokens: 6, temperature: 0 })
  t.equal(second.status, 200, 'B continues the chat A recorded (its turn record is in Redis)')
  const whole = await postJson(`${a.url}/v1/chat/completions`, { model: CHAT_MODEL, messages: next, max_tokens: 6, temperature: 0 })
  t.equal((await second.json()).choices[0].message.content, (await whole.json()).choices[0].message.content, 'the turn equals one call over the whole conversation')
})

t.test('owners and quotas hold across replicas', async (t) => {
  const [ka, kb] = await startReplicas(redis, 2, { T2R_API_KEYS: KEYS_ENV, T2R_MAX_SESSIONS_PER_KEY: '2' })
  t.teardown(async () => { await ka.kill('SIGTERM'); await kb.kill('SIGTERM') })
  const mine = await jsonOf(as(KEY_A, 'POST', `${ka.url}/v1/sessions`, {}))
  t.equal((await as(KEY_B, 'GET', `${kb.url}/v1/sessions/${mine.id}`)).status, 404, 'another key: 404 on the other replica')
  t.equal((await as(KEY_B, 'POST', `${kb.url}/v1/sessions/${mine.id}/completions`, { prompt: 'x', max_tokens: 2 })).status, 404)
  t.equal((await as(KEY_A, 'GET', `${kb.url}/v1/sessions/${mine.id}`)).status, 200, 'its owner: 200 there')
  t.same((await jsonOf(as(KEY_B, 'GET', `${kb.url}/v1/sessions`))).data, [], 'B\'s key lists none of A\'s')
  t.equal((await as(KEY_A, 'POST', `${kb.url}/v1/sessions`, {})).status, 201)
  const over = await as(KEY_A, 'POST', `${ka.url}/v1/sessions`, {})
  t.equal(over.status, 429, 'the per-key quota counts sessions made on either replica')
  t.match(await over.json(), { error: { type: 'quota_exceeded' } })
})

t.test('the SSE stream of a session turn ends with [DONE] only once the turn is stored', async (t) => {
  const s = await json(postJson(`${b.url}/v1/sessions`, { prompt: PROMPT }))
  const events = await readSse(await postJson(`${b.url}/v1/sessions/${s.id}/completions`, { max_tokens: 5, temperature: 0, ignore_eos: true, stream: true }))
  t.equal(events.at(-1)?.data, '[DONE]')
  const onA = await json(fetch(`${a.url}/v1/sessions/${s.id}`))
  t.equal(onA.tokens_consumed + onA.pending_tokens, s.tokens_consumed + s.pending_tokens + 5, 'A sees the turn at once')
})
