// Conversion requests that cannot run are refused with OpenAI-style errors naming the field; a
// trainer that crashes fails its job with the trainer's message and leaves the server serving.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer, type TestServer } from '../helpers/server.ts'

interface ErrorBody { error: { message: string, type: string, param: string | null, code: number } }

const small = { batch_size: 2, sequence_length: 16, steps: 4, transfer_steps: 0, feature_dim: 8, eval_windows: 2 }

async function submit (srv: TestServer, body: Record<string, unknown>): Promise<{ status: number, body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any -- job or error body
  const res = await postJson(`${srv.url}/v1/conversions`, body)
  return { status: res.status, body: await res.json() }
}

t.test('conversion requests', async (t) => {
  // broken-base: a copy of tiny-base whose checkpoint is corrupted once the server has loaded it.
  const scratch = mkdtempSync(join(tmpdir(), 't2r-bad-input-'))
  const models = join(scratch, 'models')
  cpSync(tinyModelsDir(), models, { recursive: true })
  cpSync(join(models, 'tiny-base'), join(models, 'broken-base'), { recursive: true })
  const manifestPath = join(models, 'broken-base', 'model.json')
  writeFileSync(manifestPath, JSON.stringify({ ...JSON.parse(readFileSync(manifestPath, 'utf8')), name: 'broken-base' }))
  const srv = await startServer({ modelsDir: models, copyModels: true })
  t.teardown(async () => {
    await srv.close()
    rmSync(scratch, { recursive: true, force: true })
  })
  const jobCount = async (): Promise<number> => ((await (await fetch(`${srv.url}/v1/conversions`)).json()) as { data: unknown[] }).data.length

  const refused = async (t: Test, body: Record<string, unknown>, status: number, param: string | RegExp, what: string): Promise<void> => {
    const r = await submit(srv, body)
    t.equal(r.status, status, `${what}: ${status}`)
    const e = (r.body as ErrorBody).error
    t.ok(e !== undefined && typeof e.message === 'string' && e.message.length > 0, `${what}: OpenAI error body with a message`)
    t.equal(e?.code, status, `${what}: code is the status`)
    if (typeof param === 'string') t.equal(e?.param, param, `${what}: names ${param}`)
    else t.match(e?.param ?? '', param, `${what}: names the field`)
  }

  t.test('the source model must exist, be softmax, and the name be free', async (t) => {
    await refused(t, { ...small, source_model: 'no-such-model', name: 'x-conv' }, 404, 'source_model', 'unknown source')
    await refused(t, { ...small, source_model: 'tiny-t2r', name: 'x-conv' }, 422, 'source_model', 't2r source')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'tiny-t2r' }, 409, 'name', 'existing target name')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'bad/name' }, 422, 'name', 'name with a slash')
  })

  t.test('file corpora stay under the data folder', async (t) => {
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', corpus: { type: 'file', path: '../x' } }, 422, 'corpus.path', 'path with ..')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', corpus: { type: 'file', path: '/etc/passwd' } }, 422, 'corpus.path', 'absolute path')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', corpus: { type: 'file', path: 'missing.txt' } }, 422, 'corpus.path', 'missing file')
  })

  t.test('a corpus too small for one batch is refused', async (t) => {
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', corpus: { type: 'text', text: 'too short' }, batch_size: 4, sequence_length: 64 }, 422, 'corpus', 'short text corpus')
  })

  t.test('numbers out of range and unknown fields fail validation', async (t) => {
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', steps: 0 }, 422, 'steps', 'steps 0')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', feature_dim: -1 }, 422, 'feature_dim', 'feature_dim -1')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', learning_rate: 5 }, 422, 'learning_rate', 'learning_rate 5')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', batch_size: 1.5 }, 422, 'batch_size', 'fractional batch_size')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', processes: 3 }, 422, 'processes', 'batch_size 2 over 3 processes')
    await refused(t, { ...small, source_model: 'tiny-base', name: 'x-conv', bogus: true }, 422, /bogus/, 'unknown field')
    await refused(t, { ...small, name: 'x-conv' }, 422, /source_model/, 'missing source_model')
  })

  t.test('refused requests create no job', async (t) => {
    t.equal(await jobCount(), 0)
  })

  t.test('a trainer crash fails the job with the trainer\'s message', async (t) => {
    writeFileSync(join(srv.modelsDir, 'broken-base', 'checkpoint.safetensors'), Buffer.from('this is not a safetensors file at all'))
    const r = await submit(srv, { ...small, source_model: 'broken-base', name: 'broken-conv' })
    t.equal(r.status, 202, 'the request itself is accepted')
    const events = await readSse(await fetch(`${srv.url}/v1/conversions/${r.body.id as string}/events`))
    t.equal(events.at(-1)?.data.status, 'failed', 'the job ends failed')
    const job = await (await fetch(`${srv.url}/v1/conversions/${r.body.id as string}`)).json() as { status: string, error: string | null, result: unknown }
    t.equal(job.status, 'failed')
    t.match(job.error ?? '', /checkpoint/, 'the error carries the trainer\'s message about the checkpoint')
    t.match(job.error ?? '', /t2r convert: error/, 'quoted from the trainer')
    t.equal(job.result, null, 'there is no result')
    const models = await (await fetch(`${srv.url}/v1/models`)).json() as { data: Array<{ id: string }> }
    t.notOk(models.data.some((m) => m.id === 'broken-conv'), 'no model was installed')

    t.equal((await fetch(`${srv.url}/health`)).status, 200, 'the server is healthy')
    const gen = await postJson(`${srv.url}/v1/completions`, { model: 'tiny-t2r', prompt: 'The', max_tokens: 3, ignore_eos: true })
    t.equal(gen.status, 200, 'and still generates')
    t.equal((await gen.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 3)

    const retry = await submit(srv, { ...small, source_model: 'tiny-base', name: 'broken-conv' })
    t.equal(retry.status, 202, 'the failed job\'s name is free for a new conversion')
    const retried = await readSse(await fetch(`${srv.url}/v1/conversions/${retry.body.id as string}/events`))
    t.equal(retried.at(-1)?.data.status, 'succeeded', 'and that conversion succeeds')
  })
})
