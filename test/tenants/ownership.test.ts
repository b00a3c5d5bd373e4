// Sessions belong to the key that created them: another key gets 404 on every route that names the
// session (as for a missing id) and does not see it listed; an admin key sees and uses them all;
// the owner survives a restart.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { startServer } from '../helpers/server.ts'
import { ADMIN_KEY, as, json, KEY_A, KEY_B, KEYS_ENV, wsConnect, wsGenerate } from '../helpers/tenants.ts'

const modelsDir = tinyModelsDir()
const dataDir = mkdtempSync(join(tmpdir(), 't2r-owners-'))
t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
const env = { T2R_API_KEYS: KEYS_ENV }
const created: Record<string, string> = {} // session id → the key that created it

t.test('another key gets 404 for every use of a session, and the session is untouched', async (t) => {
  const srv = await startServer({ modelsDir, dataDir, env })
  t.teardown(srv.close)
  const u = srv.url
  const mine = await json(as(KEY_A, 'POST', `${u}/v1/sessions`, { prompt: 'The Congress of the United States' }))
  t.match(mine, { owner: /^key-/, tokens_consumed: Number })
  created[mine.id] = KEY_A
  const state = Buffer.from(await (await as(KEY_A, 'GET', `${u}/v1/sessions/${mine.id}/state`)).arrayBuffer())

  const attempts = (id: string): Array<[string, string, string, unknown]> => [
    ['GET', `/v1/sessions/${id}`, 'info', undefined],
    ['DELETE', `/v1/sessions/${id}`, 'delete', undefined],
    ['POST', `/v1/sessions/${id}/fork`, 'fork', {}],
    ['GET', `/v1/sessions/${id}/state`, 'state export', undefined],
    ['PUT', `/v1/sessions/${id}/state`, 'state import', state],
    ['POST', `/v1/sessions/${id}/completions`, 'session completion', { max_tokens: 2 }],
    ['POST', '/v1/completions', 'completion with session_id', { prompt: 'x', max_tokens: 2, session_id: id }],
    ['POST', '/generate', 'TGI generate with session_id', { inputs: 'x', parameters: { max_new_tokens: 2, session_id: id } }],
    ['POST', '/generate_stream', 'TGI stream with session_id', { inputs: 'x', parameters: { max_new_tokens: 2, session_id: id } }]
  ]
  const unknown = 'sess_doesnotexist'
  const missing = attempts(unknown)
  for (const [i, [method, path, what, body]] of attempts(mine.id).entries()) {
    const res = await as(KEY_B, method, `${u}${path}`, body)
    t.equal(res.status, 404, what)
    const [m, p, , b] = missing[i]
    const absent = await as(KEY_B, m, `${u}${p}`, b)
    t.equal(absent.status, 404)
    t.equal((await res.text()).replaceAll(mine.id, unknown), await absent.text(), `${what}: the same answer as for a missing session`)
  }

  const socket = await wsConnect(`${u.replace('http', 'ws')}/v1/stream`, { headers: { authorization: `Bearer ${KEY_B}` } })
  const refused = await wsGenerate(socket.ws!, { id: 'w', prompt: 'x', max_tokens: 2, session_id: mine.id })
  t.match(refused, { type: 'error', error: { code: 404, param: 'session_id' } }, 'WebSocket generate with session_id')
  socket.ws!.close()

  const listedB = await json(as(KEY_B, 'GET', `${u}/v1/sessions`))
  t.notOk(listedB.data.some((s: { id: string }) => s.id === mine.id), 'not in the other key\'s list')
  const after = await json(as(KEY_A, 'GET', `${u}/v1/sessions/${mine.id}`))
  t.equal(after.tokens_consumed, mine.tokens_consumed, 'the owner\'s session is as it was')
  const listedA = await json(as(KEY_A, 'GET', `${u}/v1/sessions`))
  t.same(listedA.data.map((s: { id: string }) => s.id), [mine.id], 'the owner lists exactly its own')
})

t.test('an admin key lists every tenant\'s sessions and may use them', async (t) => {
  const srv = await startServer({ modelsDir, dataDir, env })
  t.teardown(srv.close)
  const u = srv.url
  const b = await json(as(KEY_B, 'POST', `${u}/v1/sessions`, {}))
  created[b.id] = KEY_B
  const all = await json(as(ADMIN_KEY, 'GET', `${u}/v1/sessions`))
  const owners = new Set(all.data.map((s: { owner: string }) => s.owner))
  t.ok(all.data.some((s: { id: string }) => s.id === b.id))
  t.equal(owners.size, 2, 'sessions of both user keys')
  t.equal((await as(ADMIN_KEY, 'GET', `${u}/v1/sessions/${b.id}`)).status, 200)
  t.equal((await as(KEY_B, 'GET', `${u}/v1/sessions`).then(json)).data.length, 1)
})

t.test('after a restart each session still belongs to its key', async (t) => {
  const srv = await startServer({ modelsDir, dataDir, env })
  t.teardown(srv.close)
  const u = srv.url
  const all = await json(as(ADMIN_KEY, 'GET', `${u}/v1/sessions`))
  t.same(all.data.map((s: { id: string }) => s.id).sort(), Object.keys(created).sort(), 'the sessions of the earlier runs are back')
  for (const [id, owner] of Object.entries(created)) {
    const other = owner === KEY_A ? KEY_B : KEY_A
    t.equal((await as(owner, 'POST', `${u}/v1/sessions/${id}/completions`, { prompt: ' and', max_tokens: 2 })).status, 200, 'its owner continues it')
    t.equal((await as(other, 'GET', `${u}/v1/sessions/${id}`)).status, 404, 'the other key still gets 404')
  }
})
