// File corpora are read from the data folder's corpora/ without trusting what lies there: a FIFO,
// a directory, a symlink leading outside and a file over the size cap are each refused with a 422
// naming corpus.path, the server stays responsive, and big corpora under the cap are accepted (no
// stack overflow from spreading ~500k token ids). The server runs in its own process so that a
// read blocking its event loop shows as a timeout here rather than freezing the test.
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { addressesOf } from '../../src/corpus/sotu.ts'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, spawnServer } from '../helpers/server.ts'

interface Reply { status: number, body: { id?: string, error?: { message: string, param: string | null } } }

const small = { source_model: 'tiny-base', batch_size: 2, sequence_length: 16, steps: 2, transfer_steps: 0, feature_dim: 8, eval_windows: 2 }
const CAP = 2 * 1024 * 1024 // the server's default corpus cap

/** `bytes` bytes of real English: SOTU addresses, repeated as needed. */
function english (bytes: number): Buffer {
  const source = Buffer.from(addressesOf('train').map((a) => a.text).join('\n\n'))
  return Buffer.concat(Array.from({ length: Math.ceil(bytes / source.length) }, () => source)).subarray(0, bytes)
}

t.test('file corpora that are not plain files under corpora/ are refused; big ones are not a crash', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 't2r-corpus-path-'))
  const models = join(scratch, 'models')
  cpSync(tinyModelsDir(), models, { recursive: true })
  const corpora = join(scratch, 'data', 'corpora')
  mkdirSync(join(corpora, 'a-directory'), { recursive: true })
  execFileSync('mkfifo', [join(corpora, 'fifo.txt')])
  writeFileSync(join(scratch, 'outside.txt'), english(20_000))
  symlinkSync(join(scratch, 'outside.txt'), join(corpora, 'outside-link.txt'))
  writeFileSync(join(corpora, 'eight-mb.txt'), english(8 * 1024 * 1024))
  const srv = await spawnServer({ MODELS_DIR: models, DATA_DIR: join(scratch, 'data'), T2R_DEFAULT_MODEL: 'tiny-t2r' })
  t.teardown(async () => {
    await srv.kill('SIGKILL')
    rmSync(scratch, { recursive: true, force: true })
  })

  let n = 0
  const submit = async (corpus: unknown): Promise<Reply> => {
    try {
      const res = await postJson(`${srv.url}/v1/conversions`, { ...small, name: `corpus-${n++}`, corpus }, { signal: AbortSignal.timeout(15_000) })
      return { status: res.status, body: await res.json() as Reply['body'] }
    } catch (err) {
      return { status: 0, body: { error: { message: `no answer: ${(err as Error).message}`, param: null } } }
    }
  }
  const refused = async (t: Test, path: string, message: RegExp): Promise<void> => {
    const r = await submit({ type: 'file', path })
    t.equal(r.status, 422, '422')
    t.equal(r.body.error?.param, 'corpus.path', 'naming corpus.path')
    t.match(r.body.error?.message ?? '', message, 'saying why')
  }
  const accepted = async (t: Test, corpus: unknown): Promise<void> => {
    const r = await submit(corpus)
    t.equal(r.status, 202, '202')
    if (r.status === 202) t.equal((await fetch(`${srv.url}/v1/conversions/${r.body.id ?? ''}`, { method: 'DELETE' })).status, 200, 'the job is cancelled')
  }

  t.test('a directory', async (t) => { await refused(t, 'a-directory', /not a regular file/) })
  t.test('a symlink to a file outside corpora/', async (t) => { await refused(t, 'outside-link.txt', /leads outside/) })
  t.test('an 8 MiB file, over the cap', async (t) => {
    await refused(t, 'eight-mb.txt', new RegExp(`is ${8 * 1024 * 1024} bytes, over the ${CAP}-byte limit`))
  })
  t.test('a 1.9 MB text corpus (about half a million tokens) is accepted', async (t) => {
    await accepted(t, { type: 'text', text: english(1_900_000).toString() })
  })
  t.test('and so is the same text as a file under corpora/', async (t) => {
    writeFileSync(join(corpora, 'under-cap.txt'), english(1_900_000))
    await accepted(t, { type: 'file', path: 'under-cap.txt' })
  })
  // Last: before the fix, reading it blocked the server for good.
  t.test('a FIFO, and the server stays responsive', async (t) => {
    await refused(t, 'fifo.txt', /not a regular file/)
    const health = await fetch(`${srv.url}/health`, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, () => 0)
    t.equal(health, 200, '/health still answers')
  })
})
