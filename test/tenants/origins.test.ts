// Browsers: a WebSocket upgrade from an Origin not on the allow-list is refused (403) before the
// socket opens, with or without keys (a web page must not drive a local server); clients that send
// no Origin are not browsers and connect. CORS is off unless origins are configured.
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'
import { as, KEY_A, KEYS_ENV, wsConnect, wsGenerate } from '../helpers/tenants.ts'

const modelsDir = tinyModelsDir()
const APP = 'https://app.example.com'
const EVIL = 'https://evil.example.net'

t.test('without keys: a foreign Origin cannot open a WebSocket; none is allowed by default', async (t) => {
  const srv = await startServer({ modelsDir })
  t.teardown(srv.close)
  const url = `${srv.url.replace('http', 'ws')}/v1/stream`
  const refused = await wsConnect(url, { origin: EVIL })
  t.equal(refused.status, 403)
  t.match(refused.body, { error: { type: 'permission_error', message: /origin https:\/\/evil\.example\.net/ } })
  t.equal((await wsConnect(url, { origin: `http://127.0.0.1:${new URL(srv.url).port}` })).status, 403, 'not even the server\'s own address: no page is served from it')
  const plain = await wsConnect(url)
  t.equal(plain.status, 101, 'no Origin header: not a browser')
  t.match(await wsGenerate(plain.ws!, { id: 'a', prompt: 'The', max_tokens: 2 }), { type: 'end' })
  plain.ws!.close()
})

t.test('with keys and an allow-list: listed origins connect, others are refused even with a valid key', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV, T2R_WS_ORIGINS: APP } })
  t.teardown(srv.close)
  const url = `${srv.url.replace('http', 'ws')}/v1/stream?api_key=${KEY_A}`
  t.equal((await wsConnect(url, { origin: EVIL })).status, 403)
  const allowed = await wsConnect(url, { origin: APP })
  t.equal(allowed.status, 101)
  t.match(await wsGenerate(allowed.ws!, { id: 'a', prompt: 'The', max_tokens: 2 }), { type: 'end' })
  allowed.ws!.close()
})

const preflight = async (url: string): Promise<Response> => await fetch(`${url}/v1/completions`, {
  method: 'OPTIONS',
  headers: { origin: APP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' }
})

t.test('CORS is off by default: no preflight answer, no CORS headers', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV } })
  t.teardown(srv.close)
  const res = await preflight(srv.url)
  t.not(res.status, 204)
  t.equal(res.headers.get('access-control-allow-origin'), null)
  const post = await fetch(`${srv.url}/v1/models`, { headers: { origin: APP, authorization: `Bearer ${KEY_A}` } })
  t.equal(post.status, 200)
  t.equal(post.headers.get('access-control-allow-origin'), null)
})

t.test('CORS with configured origins: preflights answered without a key, listed origins only', async (t) => {
  const srv = await startServer({ modelsDir, env: { T2R_API_KEYS: KEYS_ENV, T2R_CORS_ORIGINS: APP } })
  t.teardown(srv.close)
  const res = await preflight(srv.url)
  t.equal(res.status, 204)
  t.equal(res.headers.get('access-control-allow-origin'), APP)
  t.match(res.headers.get('access-control-allow-headers'), /authorization/)
  const get = await fetch(`${srv.url}/v1/models`, { headers: { origin: APP, authorization: `Bearer ${KEY_A}` } })
  t.equal(get.headers.get('access-control-allow-origin'), APP)
  const foreign = await fetch(`${srv.url}/v1/models`, { headers: { origin: EVIL, authorization: `Bearer ${KEY_A}` } })
  t.equal(foreign.headers.get('access-control-allow-origin'), null)
  t.equal((await as(null, 'GET', `${srv.url}/v1/models`)).status, 401, 'CORS does not open the API')
  const ws = await wsConnect(`${srv.url.replace('http', 'ws')}/v1/stream?api_key=${KEY_A}`, { origin: APP })
  t.equal(ws.status, 101, 'the CORS origins are trusted with WebSockets unless T2R_WS_ORIGINS says otherwise')
  ws.ws!.close()
})
