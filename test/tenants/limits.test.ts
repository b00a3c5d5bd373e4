// Per-key limits: requests per minute (429 with Retry-After; other keys unaffected; attempts
// without a valid key count per address), sessions per key and per server (429), and 503 with
// Retry-After while the event loop lags.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'
import { as, json, KEY_A, KEY_B, KEYS_ENV } from '../helpers/tenants.ts'

const modelsDir = tinyModelsDir()

t.test('rate limit: the request after the limit is 429 with Retry-After, per key', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV, T2R_RATE_LIMIT: '3' } })
  t.teardown(srv.close)
  for (let i = 0; i < 3; i++) t.equal((await as(KEY_A, 'GET', `${srv.url}/v1/models`)).status, 200)
  const limited = await as(KEY_A, 'POST', `${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 2 })
  t.equal(limited.status, 429)
  const retry = Number(limited.headers.get('retry-after'))
  t.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`)
  t.match(await limited.json(), { error: { type: 'rate_limit_exceeded', code: 429, message: /3 requests per minute/ } })
  const tgi = await as(KEY_A, 'POST', `${srv.url}/generate`, { inputs: 'The' })
  t.equal(tgi.status, 429)
  t.match(await tgi.json(), { error_type: 'rate_limit_exceeded' })
  t.equal((await as(KEY_B, 'GET', `${srv.url}/v1/models`)).status, 200, 'another key has its own budget')
  t.equal((await fetch(`${srv.url}/health`)).status, 200, 'probes are not limited')
})

t.test('rate limit: guesses without a valid key are limited per address', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV, T2R_RATE_LIMIT: '3' } })
  t.teardown(srv.close)
  for (let i = 0; i < 3; i++) t.equal((await as(`guess-number-${i}-0000000000`, 'GET', `${srv.url}/v1/models`)).status, 401)
  const limited = await as('guess-number-3-0000000000', 'GET', `${srv.url}/v1/models`)
  t.equal(limited.status, 429)
  t.ok(Number(limited.headers.get('retry-after')) >= 1)
  t.equal((await as(KEY_A, 'GET', `${srv.url}/v1/models`)).status, 200, 'a valid key counts on its own')
})

t.test('session quota: per key, then per server; 429 until a session is deleted', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV, T2R_MAX_SESSIONS_PER_KEY: '2', T2R_MAX_SESSIONS: '3' } })
  t.teardown(srv.close)
  const u = srv.url
  const first = await json(as(KEY_A, 'POST', `${u}/v1/sessions`, {}))
  t.equal((await as(KEY_A, 'POST', `${u}/v1/sessions`, {})).status, 201)
  const over = await as(KEY_A, 'POST', `${u}/v1/sessions`, {})
  t.equal(over.status, 429)
  t.match(await over.json(), { error: { type: 'quota_exceeded', message: /limit of 2/ } })
  t.equal((await as(KEY_A, 'POST', `${u}/v1/sessions/${first.id}/fork`, {})).status, 429, 'a fork is a new session too')
  t.equal((await as(KEY_B, 'POST', `${u}/v1/sessions`, {})).status, 201, 'another key has its own quota')
  const full = await as(KEY_B, 'POST', `${u}/v1/sessions`, {})
  t.equal(full.status, 429, 'the server-wide limit')
  t.match(await full.json(), { error: { type: 'quota_exceeded', message: /3 sessions/ } })
  t.equal((await as(KEY_A, 'DELETE', `${u}/v1/sessions/${first.id}`)).status, 200)
  t.equal((await as(KEY_B, 'POST', `${u}/v1/sessions`, {})).status, 201, 'room again after a delete')
  t.equal((await as(KEY_A, 'GET', `${u}/v1/sessions`).then(json)).data.length, 1)
})

t.test('a lagging event loop answers 503 with Retry-After, and recovers', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_MAX_EVENT_LOOP_DELAY_MS: '50' } })
  t.teardown(srv.close)
  t.equal((await fetch(`${srv.url}/v1/models`)).status, 200)
  // Keep this process's event loop busy 200 ms at a time, as a server drowning in work would.
  const blocker = setInterval(() => { const end = Date.now() + 200; while (Date.now() < end); }, 0)
  let res: Response | null = null
  for (let i = 0; i < 100; i++) {
    res = await fetch(`${srv.url}/v1/models`)
    if (res.status === 503) break
  }
  clearInterval(blocker)
  t.equal(res?.status, 503)
  t.equal(res?.headers.get('retry-after'), '5')
  t.match(await res?.json(), { error: { type: 'unavailable', message: /under pressure/ } })
  let after = 0
  for (let i = 0; i < 100 && after !== 200; i++) {
    after = (await fetch(`${srv.url}/v1/models`)).status
    if (after !== 200) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(after, 200, 'serves again once the loop is idle')
})
