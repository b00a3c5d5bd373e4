// What survives when things die: a replica killed mid-traffic (every answered turn is on the other
// replica; its leases expire), Redis restarted with its append-only file (no session lost), Redis
// away (503 on session work, stateless generation still 200, /ready says so, a turn that could not be
// stored is not answered as a success).
import t from 'tap'
import { metricValue, postJson } from '../helpers/server.ts'
import { sseEvents } from '../helpers/sse.ts'
import { json, startRedis, startReplicas, turn, waitForStore, waitForSession, type Json } from './replicas.ts'

const redis = await startRedis({ aof: true })
t.teardown(redis.stop)
const [a, b] = await startReplicas(redis, 2)
t.teardown(async () => { await b.kill('SIGTERM') })

const held = (s: Json): number => s.tokens_consumed + s.pending_tokens
/** Sessions of the first test, checked again after Redis restarts. */
const survivors = new Map<string, number>()

t.test('kill -9 of a replica mid-traffic: every answered turn is on the other replica, its leases expire', async (t) => {
  const ids = await Promise.all([0, 1, 2].map(async () => (await json(postJson(`${a.url}/v1/sessions`, { prompt: 'The Union' }))).id as string))
  const answered = new Map<string, number>()
  let stop = false
  // Turns one after another on each session, on A, until A dies under them.
  const traffic = ids.map(async (id) => {
    while (!stop) {
      try {
        const r = await postJson(`${a.url}/v1/sessions/${id}/completions`, { prompt: ' and', max_tokens: 6, temperature: 0, ignore_eos: true })
        if (r.status !== 200) throw new Error(`turn answered ${r.status}`)
        await r.json()
        answered.set(id, held(await json(fetch(`${a.url}/v1/sessions/${id}`)))) // what A reports after answering
      } catch {
        return // A was killed under this request
      }
    }
  })
  const streamed = await json(postJson(`${a.url}/v1/sessions`, { prompt: 'The Union' }))
  while (answered.size < ids.length) await new Promise((resolve) => setTimeout(resolve, 20)) // every session has answered turns
  const stream = await postJson(`${a.url}/v1/sessions/${streamed.id}/completions`, { max_tokens: 4096, temperature: 0, ignore_eos: true, stream: true })
  t.equal(stream.status, 200)
  await sseEvents(stream).next() // generating: A holds its lease
  await a.kill('SIGKILL')
  stop = true
  await Promise.all(traffic)

  const busy = await postJson(`${b.url}/v1/sessions/${streamed.id}/completions`, { prompt: ' and', max_tokens: 2 })
  t.equal(busy.status, 409, 'the dead replica\'s lease still holds right after the kill')
  for (const id of [...ids, streamed.id]) {
    const s = await waitForSession(b.url, id, (x) => x.busy === false)
    t.ok(held(s) >= (answered.get(id) ?? held(streamed)), `session ${id}: every answered turn is there (${held(s)} tokens)`)
    t.ok((await turn(b.url, id, ' and', 3)).choices[0].text.length > 0, 'its lease expired: B continues it')
    survivors.set(id, held(await json(fetch(`${b.url}/v1/sessions/${id}`))))
  }
})

t.test('Redis restarted with its append-only file: no session lost', async (t) => {
  await redis.restart()
  await waitForStore(b.url)
  for (const [id, tokens] of survivors) {
    const s = await json(fetch(`${b.url}/v1/sessions/${id}`))
    t.equal(held(s), tokens, `session ${id} is back with its tokens`)
  }
  const [id] = survivors.keys()
  t.ok((await turn(b.url, id, ' and', 3)).choices[0].text.length > 0, 'and continues')
})

t.test('Redis away: 503 on session work, 200 on stateless generation, /ready says degraded; back: sessions work', async (t) => {
  const s = await json(postJson(`${b.url}/v1/sessions`, { prompt: 'The Union' }))
  await redis.kill()
  const onSession = await postJson(`${b.url}/v1/sessions/${s.id}/completions`, { prompt: ' and', max_tokens: 3, temperature: 0 })
  t.equal(onSession.status, 503)
  t.match(await onSession.json(), { error: { type: 'unavailable', message: /session store unavailable: Redis/ } })
  t.equal((await postJson(`${b.url}/v1/sessions`, {})).status, 503, 'no new session')
  t.equal((await fetch(`${b.url}/v1/sessions/${s.id}`)).status, 503, 'no session lookup')
  t.equal((await postJson(`${b.url}/generate`, { inputs: 'The Union', parameters: { max_new_tokens: 3 } })).status, 200, 'TGI without a session: 200')
  t.equal((await postJson(`${b.url}/v1/completions`, { prompt: 'The Union', max_tokens: 3 })).status, 200, 'OpenAI without a session: 200')
  const jobs = await fetch(`${b.url}/v1/conversions`)
  t.equal(jobs.status, 503, 'the conversion queue (same Redis) answers 503, not 500')
  t.match(await jobs.json(), { error: { type: 'unavailable', message: /conversion queue unavailable/ } })
  const ready = await fetch(`${b.url}/ready`)
  t.equal(ready.status, 200, 'still ready: the load balancer keeps sending stateless work')
  t.match(await ready.json(), { status: 'degraded', session_store: { kind: 'redis', reachable: false, error: /unreachable/ } })
  t.equal(await metricValue(b.url, 't2r_session_store_up'), 0, 'the gauge says Redis is away')

  await redis.restart()
  const back = await waitForStore(b.url)
  t.same(back.session_store, { kind: 'redis', reachable: true })
  t.equal(back.status, 'ready')
  t.equal(await metricValue(b.url, 't2r_session_store_up'), 1)
  t.ok((await turn(b.url, s.id, ' and', 3)).choices[0].text.length > 0, 'the session (kept by the AOF) continues')
})

t.test('a turn whose write-through fails is answered with an error, never success', async (t) => {
  const s = await json(postJson(`${b.url}/v1/sessions`, { prompt: 'The Union' }))
  const res = await postJson(`${b.url}/v1/sessions/${s.id}/completions`, { max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true })
  t.equal(res.status, 200)
  const events = sseEvents(res)
  await events.next()
  await redis.kill() // while it generates: its write-through will find no Redis
  const rest: Json[] = []
  for await (const e of events) rest.push(e.data)
  t.notOk(rest.includes('[DONE]'), 'no [DONE]')
  t.match(rest.at(-1), { error: { message: /could not be saved/ } }, 'the stream ends with an error frame')
  await redis.restart()
  await waitForStore(b.url)
  const after = await waitForSession(b.url, s.id, (x) => x.busy === false)
  t.equal(held(after), held(s), 'the session keeps its last stored state')
})
