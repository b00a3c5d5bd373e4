// State export/import and persistence across restarts.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, spawnServer, startServer } from '../helpers/server.ts'

const modelsDir = tinyModelsDir()

async function json (res: Response | Promise<Response>): Promise<any> { return await (await res).json() } // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON body

t.test('an exported state imported into a new session continues identically', async (t) => {
  const srv = await startServer({ modelsDir })
  t.teardown(srv.close)
  const s = await json(postJson(`${srv.url}/v1/sessions`, { prompt: 'The Congress of the United States' }))
  const res = await fetch(`${srv.url}/v1/sessions/${s.id}/state`)
  t.equal(res.headers.get('content-type'), 'application/octet-stream')
  const blob = Buffer.from(await res.arrayBuffer())
  t.equal(blob.subarray(0, 4).toString(), 'T2RS', 'self-describing')
  const other = await json(postJson(`${srv.url}/v1/sessions`, {}))
  const put = await fetch(`${srv.url}/v1/sessions/${other.id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: blob })
  t.equal(put.status, 200)
  t.equal((await put.json()).tokens_consumed, s.tokens_consumed)
  const a = await json(postJson(`${srv.url}/v1/sessions/${s.id}/completions`, { max_tokens: 15, temperature: 0 }))
  const b = await json(postJson(`${srv.url}/v1/sessions/${other.id}/completions`, { max_tokens: 15, temperature: 0 }))
  t.equal(b.choices[0].text, a.choices[0].text)
})

t.test('import checks the bytes: corrupt, truncated or another model\'s state is refused with 422', async (t) => {
  const srv = await startServer({ modelsDir })
  t.teardown(srv.close)
  const s = await json(postJson(`${srv.url}/v1/sessions`, { prompt: 'The' }))
  const blob = Buffer.from(await (await fetch(`${srv.url}/v1/sessions/${s.id}/state`)).arrayBuffer())
  const put = async (id: string, body: Buffer): Promise<Response> => await fetch(`${srv.url}/v1/sessions/${id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) })
  const flipped = Buffer.from(blob)
  flipped[flipped.length - 3] ^= 0xff
  let res = await put(s.id, flipped)
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { message: /checksum/ } })
  res = await put(s.id, blob.subarray(0, blob.length - 8))
  t.equal(res.status, 422)
  res = await put(s.id, Buffer.from('not a state at all'))
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { message: /magic/ } })
  const base = await json(postJson(`${srv.url}/v1/sessions`, { model: 'tiny-base' }))
  res = await put(base.id, blob)
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { message: /tiny-t2r/ } })
  const after = await json(fetch(`${srv.url}/v1/sessions/${s.id}`))
  t.equal(after.tokens_consumed, s.tokens_consumed, 'a refused import leaves the session as it was')
})

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  t.test(`a restart after ${signal} keeps sessions whose generation completed`, async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 't2r-restart-'))
    t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
    const env = { MODELS_DIR: modelsDir, DATA_DIR: dataDir, T2R_DEFAULT_MODEL: 'tiny-t2r' }
    const first = await spawnServer(env)
    const s = await json(postJson(`${first.url}/v1/sessions`, {}))
    await json(postJson(`${first.url}/v1/sessions/${s.id}/completions`, { prompt: 'The Union', max_tokens: 10, temperature: 0 }))
    const fork = await json(postJson(`${first.url}/v1/sessions/${s.id}/fork`, {}))
    const expected = await json(postJson(`${first.url}/v1/sessions/${fork.id}/completions`, { max_tokens: 10, temperature: 0 }))
    await first.kill(signal)
    const second = await startServer({ modelsDir, dataDir })
    t.teardown(second.close)
    const info = await fetch(`${second.url}/v1/sessions/${s.id}`)
    t.equal(info.status, 200)
    const next = await json(postJson(`${second.url}/v1/sessions/${s.id}/completions`, { max_tokens: 10, temperature: 0 }))
    t.equal(next.choices[0].text, expected.choices[0].text)
  })
}
