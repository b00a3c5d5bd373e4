// API keys: every route but /health, /ready and /metrics needs one; 401 (with WWW-Authenticate and
// the route's error shape) without a key or with a wrong one, on HTTP and on WebSocket upgrades.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'
import { ADMIN_KEY, as, json, KEY_A, KEYS_ENV, wsConnect, wsGenerate } from '../helpers/tenants.ts'

const srv = await startServer({ modelsDir: tinyModelsDir(), env: { T2R_API_KEYS: KEYS_ENV } })
t.teardown(srv.close)
const ws = srv.url.replace('http', 'ws')

t.test('no key: 401 on generation, session and listing routes, in each API\'s error shape', async (t) => {
  const tgi = await as(null, 'POST', `${srv.url}/generate`, { inputs: 'The' })
  t.equal(tgi.status, 401)
  t.equal(tgi.headers.get('www-authenticate'), 'Bearer realm="t2r-serve"')
  t.match(await tgi.json(), { error: /missing API key/, error_type: 'authentication_error' })
  const openai = await as(null, 'POST', `${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 2 })
  t.equal(openai.status, 401)
  t.match(await openai.json(), { error: { type: 'authentication_error', code: 401 } })
  for (const [method, path] of [['GET', '/v1/sessions'], ['POST', '/v1/sessions'], ['GET', '/v1/models'], ['GET', '/info'], ['POST', '/generate_stream'], ['GET', '/v1/conversions']]) {
    t.equal((await as(null, method, `${srv.url}${path}`, method === 'POST' ? {} : undefined)).status, 401, `${method} ${path}`)
  }
})

t.test('a wrong key is 401; x-api-key works like Authorization: Bearer', async (t) => {
  const wrong = await as('not-a-configured-key-000', 'POST', `${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 2 })
  t.equal(wrong.status, 401)
  t.match(await wrong.json(), { error: { message: 'invalid API key' } })
  const ok = await as(KEY_A, 'POST', `${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 2, temperature: 0 })
  t.equal(ok.status, 200)
  const viaHeader = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': KEY_A }, body: JSON.stringify({ prompt: 'The', max_tokens: 2, temperature: 0 }) })
  t.equal(viaHeader.status, 200)
  t.equal((await viaHeader.json()).choices[0].text, (await ok.json()).choices[0].text)
})

t.test('probes and scrapers need no key', async (t) => {
  for (const path of ['/health', '/ready', '/metrics']) t.equal((await fetch(`${srv.url}${path}`)).status, 200, path)
})

t.test('a key in the URL is refused on HTTP routes', async (t) => {
  const res = await as(null, 'POST', `${srv.url}/v1/completions?api_key=${KEY_A}`, { prompt: 'The', max_tokens: 2 })
  t.equal(res.status, 401)
  t.match(await res.json(), { error: { message: /not accepted in the URL/ } })
})

t.test('WebSocket: the upgrade needs a key (header, or ?api_key= which browsers can send)', async (t) => {
  const none = await wsConnect(`${ws}/v1/stream`)
  t.equal(none.status, 401)
  t.match(none.body, { error: { type: 'authentication_error' } })
  t.equal((await wsConnect(`${ws}/v1/stream`, { headers: { authorization: 'Bearer not-a-configured-key-000' } })).status, 401)
  for (const opened of [await wsConnect(`${ws}/v1/stream`, { headers: { authorization: `Bearer ${KEY_A}` } }), await wsConnect(`${ws}/v1/stream?api_key=${KEY_A}`)]) {
    t.equal(opened.status, 101)
    const end = await wsGenerate(opened.ws!, { id: 'g', prompt: 'The', max_tokens: 3 })
    t.match(end, { type: 'end', usage: { completion_tokens: 3 } })
    opened.ws!.close()
  }
})

t.test('conversion jobs need the admin scope: 403 for a user key', async (t) => {
  for (const [method, path, body] of [['GET', '/v1/conversions', undefined], ['POST', '/v1/conversions', { source_model: 'tiny-base', name: 'x' }], ['DELETE', '/v1/conversions/job_1', undefined]] as const) {
    const res = await as(KEY_A, method, `${srv.url}${path}`, body)
    t.equal(res.status, 403, `${method} ${path}`)
    t.match(await res.json(), { error: { type: 'permission_error', code: 403 } })
  }
  const listed = await as(ADMIN_KEY, 'GET', `${srv.url}/v1/conversions`)
  t.equal(listed.status, 200)
  t.match(await json(listed), { object: 'list' })
})
