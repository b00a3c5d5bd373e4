// State import is untrusted input: every claim of an imported state's header and every tensor value
// is checked, through the real PUT /v1/sessions/:id/state. The states here are rewritten the way a
// client could (re-hashing the header, as anyone can), so only validation stands between them and
// the engine.
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, startServer } from '../helpers/server.ts'

const modelsDir = tinyModelsDir()

async function json (res: Response | Promise<Response>): Promise<any> { return await (await res).json() } // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON body

interface Parts { version: number, header: Record<string, unknown>, body: Buffer }

function split (blob: Buffer): Parts {
  const len = blob.readUInt32LE(8)
  return { version: blob.readUInt32LE(4), header: JSON.parse(blob.toString('utf8', 12, 12 + len)), body: Buffer.from(blob.subarray(12 + len)) }
}

/** The state format written from its parts; `rehash` recomputes the SHA-256 of the given version. */
function assemble ({ version, header, body }: Parts, rehash = true): Buffer {
  let out = header
  if (rehash) {
    const { sha256: _old, ...claims } = header
    const hash = createHash('sha256')
    if (version >= 2) hash.update(JSON.stringify(claims))
    out = { ...claims, sha256: hash.update(body).digest('hex') }
  }
  const text = Buffer.from(JSON.stringify(out))
  const prefix = Buffer.alloc(12)
  prefix.write('T2RS', 0, 'latin1')
  prefix.writeUInt32LE(version, 4)
  prefix.writeUInt32LE(text.length, 8)
  return Buffer.concat([prefix, text, body])
}

function edited (blob: Buffer, edit: (p: Parts) => void, rehash = true): Buffer {
  const parts = split(blob)
  edit(parts)
  return assemble(parts, rehash)
}

async function setup (t: Test, model = 'tiny-t2r'): Promise<{ url: string, id: string, blob: Buffer, put: (id: string, body: Buffer) => Promise<Response>, fresh: () => Promise<string> }> {
  const srv = await startServer({ modelsDir })
  t.teardown(srv.close)
  const s = await json(postJson(`${srv.url}/v1/sessions`, { model, prompt: 'The Congress of the United States' }))
  const blob = Buffer.from(await (await fetch(`${srv.url}/v1/sessions/${s.id}/state`)).arrayBuffer())
  return {
    url: srv.url,
    id: s.id,
    blob,
    put: async (id, body) => await fetch(`${srv.url}/v1/sessions/${id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(body) }),
    fresh: async () => (await json(postJson(`${srv.url}/v1/sessions`, { model }))).id
  }
}

async function greedy (url: string, id: string): Promise<string> {
  const res = await postJson(`${url}/v1/sessions/${id}/completions`, { max_tokens: 12, temperature: 0 })
  if (res.status !== 200) throw new Error(`completion on ${id}: ${res.status} ${await res.text()}`)
  return (await res.json()).choices[0].text
}

t.test('a rewritten but unchanged state (re-hashed by the client) imports and continues identically', async (t) => {
  const { url, id, blob, put, fresh } = await setup(t)
  t.equal(split(blob).version, 2)
  t.equal((split(blob).header.pending as number[]).length, 1, 'the engine leaves one token pending: the limit the import enforces')
  const other = await fresh()
  const res = await put(other, edited(blob, () => {}))
  t.equal(res.status, 200)
  t.equal(await greedy(url, other), await greedy(url, id))
})

t.test('claims an imported state cannot make are refused with 422 naming the field, and change nothing', async (t) => {
  const { url, id, blob, put, fresh } = await setup(t)
  const target = await fresh()
  const before = await json(fetch(`${url}/v1/sessions/${target}`))
  const cases: Array<[string, Buffer, RegExp]> = [
    ['100,000 pending tokens', edited(blob, (p) => { p.header.pending = Array(100_000).fill(5) }), /header\.pending: 100000 pending tokens/],
    ['2 pending tokens', edited(blob, (p) => { p.header.pending = [5, 6] }), /header\.pending/],
    ['a pending token outside the vocabulary', edited(blob, (p) => { p.header.pending = [8192] }), /header\.pending: token 8192 outside/],
    ['a fractional pending token', edited(blob, (p) => { p.header.pending = [1.5] }), /header\.pending\.0/],
    ['position 1e15', edited(blob, (p) => { p.header.position = 1e15 }), /header\.position: 1000000000000000 tokens consumed/],
    ['position 1e300', edited(blob, (p) => { p.header.position = 1e300 }), /header\.position: 1e\+300/],
    ['a negative position', edited(blob, (p) => { p.header.position = -1 }), /header\.position/],
    ['a string position', edited(blob, (p) => { p.header.position = '7' }), /header\.position/],
    ['NaN in a tensor', edited(blob, (p) => { p.body.writeFloatLE(NaN, 4 * 17) }), /tensor state_kv: value NaN at index 17/],
    ['+Infinity in the last tensor', edited(blob, (p) => { p.body.writeFloatLE(Infinity, p.body.length - 4) }), /tensor state_k: value Infinity/],
    ['a tensor renamed', edited(blob, (p) => { (p.header.tensors as Array<{ name: string }>)[1].name = 'state_q' }), /header\.tensors\.1: expected state_k/],
    ['a tensor reshaped', edited(blob, (p) => { (p.header.tensors as Array<{ shape: number[] }>)[0].shape[0] = 3 }), /header\.tensors\.0/],
    ['extra tensor bytes', edited(blob, (p) => { p.body = Buffer.concat([p.body, Buffer.alloc(4)]) }), /tensor bytes/],
    ['an unknown header field', edited(blob, (p) => { p.header.extra = 1 }), /header/],
    ['another architecture', edited(blob, (p) => { p.header.architecture = 'softmax' }), /header\.architecture/],
    ['position edited without re-hashing', edited(blob, (p) => { p.header.position = 3 }, false), /header\.sha256: .*checksum/],
    ['pending edited without re-hashing', edited(blob, (p) => { p.header.pending = [7] }, false), /checksum/]
  ]
  const overrun = Buffer.from(blob)
  overrun.writeUInt32LE(blob.length, 8)
  cases.push(['a header length overrunning the buffer', overrun, new RegExp(`header length ${blob.length} overruns the ${blob.length}-byte state`)])
  const huge = Buffer.from(blob)
  huge.writeUInt32LE(0xffffffff, 8)
  cases.push(['a 4 GiB header length', huge, /header length 4294967295 exceeds/])
  for (const [what, body, message] of cases) {
    const res = await put(target, body)
    t.equal(res.status, 422, what)
    t.match(await res.json(), { error: { message, param: 'body' } }, what)
  }
  t.same(await json(fetch(`${url}/v1/sessions/${target}`)), before, 'the refused imports left the session as it was')
  t.equal(await greedy(url, target), await greedy(url, await fresh()), 'and it still generates')
  t.ok((await greedy(url, id)).length > 0, 'the source session is untouched')
})

t.test('a softmax state\'s KV length must equal its position', async (t) => {
  const { blob, put, fresh } = await setup(t, 'tiny-base')
  const target = await fresh()
  const position = split(blob).header.position as number
  let res = await put(target, edited(blob, (p) => { p.header.position = position + 1 }))
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { message: new RegExp(`header\\.tensors\\.0: expected past_key \\[2,1,2,${position + 1},16\\]`) } })
  res = await put(target, edited(blob, (p) => { p.header.position = 1e15 }))
  t.equal(res.status, 422)
  t.match(await res.json(), { error: { message: /header\.position/ } })
  res = await put(target, edited(blob, () => {}))
  t.equal(res.status, 200, 'unchanged, it imports')
})

t.test('version 1 states (tensor-only checksum) are still read, from an import and from disk', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 't2r-v1-'))
  t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
  const first = await startServer({ modelsDir, dataDir })
  const s = await json(postJson(`${first.url}/v1/sessions`, { prompt: 'Fellow citizens' }))
  const fork = await json(postJson(`${first.url}/v1/sessions/${s.id}/fork`, {}))
  const expected = await greedy(first.url, fork.id)
  const v1 = edited(Buffer.from(await (await fetch(`${first.url}/v1/sessions/${s.id}/state`)).arrayBuffer()), (p) => { p.version = 1 })
  const imported = await json(postJson(`${first.url}/v1/sessions`, {}))
  const res = await fetch(`${first.url}/v1/sessions/${imported.id}/state`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(v1) })
  t.equal(res.status, 200)
  t.equal(await greedy(first.url, imported.id), expected)
  await first.close()
  const file = join(dataDir, 'sessions', `${s.id}.t2rs`)
  writeFileSync(file, edited(readFileSync(file), (p) => { p.version = 1 }))
  const second = await startServer({ modelsDir, dataDir })
  t.teardown(second.close)
  t.equal(await greedy(second.url, s.id), expected)
})
