// POST /v1/conversions with a Hugging Face checkpoint as the source ({source: {type: hf, path}},
// path relative to --imports-dir): the server imports it (the real `t2r import`), converts it with
// swap-then-finetune and serves the result; the checkpoint itself never lands in models/. Bad
// sources (paths leading out, symlinks out, broken shards and headers, unsupported architecture,
// dtype or RoPE, vocabulary and token-id mismatches) are each a 422 naming source.path with one
// line that says what is wrong, nothing is queued or written to models/, and the server serves on.
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { tinyModelsDir } from '../helpers/fixtures.ts'
import { postJson, readSse, startServer, type TestServer } from '../helpers/server.ts'
import { hfFixtures } from './fixtures.ts'

const fx = hfFixtures()
const small = { steps: 2, transfer_steps: 2, batch_size: 2, sequence_length: 16, feature_dim: 8, eval_windows: 2 }

interface Reply { status: number, body: { id?: string, error?: { message: string, param: string | null } } }

async function submit (srv: TestServer, body: Record<string, unknown>): Promise<Reply> {
  const res = await postJson(`${srv.url}/v1/conversions`, body)
  return { status: res.status, body: await res.json() as Reply['body'] }
}

function editJson (path: string, change: (doc: Record<string, unknown>) => void): void {
  const doc = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
  change(doc)
  writeFileSync(path, JSON.stringify(doc))
}

/** Rewrites a safetensors header in place (the data is left as it is; the header keeps its length). */
function editHeader (path: string, change: (header: Record<string, { dtype: string }>) => void): void {
  const file = readFileSync(path)
  const n = Number(file.readBigUInt64LE(0))
  const header = JSON.parse(file.subarray(8, 8 + n).toString()) as Record<string, { dtype: string }>
  change(header)
  const text = Buffer.from(JSON.stringify(header))
  if (text.length > n) throw new Error('edited header is longer than the original')
  file.set(Buffer.concat([text, Buffer.alloc(n - text.length, ' ')]), 8)
  writeFileSync(path, file)
}

t.test('a Hugging Face checkpoint converts to a served t2r model', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 't2r-hf-conv-'))
  const imports = join(scratch, 'imports')
  for (const v of ['llama-gqa', 'gpt2'] as const) cpSync(fx.hf(v), join(imports, 'team', v), { recursive: true })
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true, env: { T2R_IMPORTS_DIR: imports } })
  t.teardown(async () => {
    await srv.close()
    rmSync(scratch, { recursive: true, force: true })
  })
  for (const [path, name, kvHeads] of [['team/llama-gqa', 'gqa-t2r', 2], ['team/gpt2', 'gpt2-t2r', 4]] as const) {
    t.test(`${path} -> ${name}`, async (t) => {
      const res = await postJson(`${srv.url}/v1/conversions`, { ...small, source: { type: 'hf', path }, name })
      t.equal(res.status, 202, 'accepted')
      const job = await res.json() as { id: string, params: Record<string, unknown> }
      t.equal(job.params.source_hf_path, path, 'the job records its source')
      t.equal(job.params.source_model, null)
      const events = await readSse(await fetch(`${srv.url}/v1/conversions/${job.id}/events`))
      const steps = events.filter((e) => e.event === 'progress' && e.data.event === 'step').map((e) => e.data.phase as string)
      t.same(steps, ['transfer', 'transfer', 'finetune', 'finetune'], 'attention transfer, then finetuning')
      const last = events.at(-1)!
      t.equal(last.data.status, 'succeeded', `the job succeeded${last.data.error === null ? '' : `: ${String(last.data.error)}`}`)
      const manifest = JSON.parse(readFileSync(join(srv.modelsDir, name, 'model.json'), 'utf8')) as { architecture: string, kv_heads: number, state: Array<{ shape: unknown[] }>, teacher: string, eos_token_ids: number[] }
      t.equal(manifest.architecture, 't2r')
      t.equal(manifest.kv_heads, kvHeads, 'kv heads as imported')
      t.same(manifest.state[0].shape, [2, 'batch', kvHeads, 8, 16], 'state per key/value head')
      t.equal(manifest.teacher, path.split('/')[1], 'the teacher is named after the checkpoint folder')
      t.same(manifest.eos_token_ids, [8191, 13], 'the checkpoint\'s EOS ids carried over')
      const gen = await postJson(`${srv.url}/v1/completions`, { model: name, prompt: 'The Congress', max_tokens: 5, ignore_eos: true })
      t.equal(gen.status, 200, 'the converted model serves')
      t.equal((await gen.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 5)
      t.notOk(readdirSync(join(srv.dataDir, 'conversions', job.id)).includes('source'), 'the job\'s import is removed once converted')
    })
  }
  t.test('models/ holds the conversions and nothing imported', async (t) => {
    t.same(readdirSync(srv.modelsDir).sort(), ['gpt2-t2r', 'gqa-t2r', 'tiny-base', 'tiny-t2r'])
  })
})

t.test('bad Hugging Face sources: 422 naming source.path, nothing queued or written, still serving', async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 't2r-hf-bad-'))
  const imports = join(scratch, 'imports')
  mkdirSync(imports)
  writeFileSync(join(scratch, 'outside.safetensors'), 'x')
  const broken = (name: string, variant: 'llama-gqa' | 'llama-mqa-linear-f16-sharded', breakIt: (dir: string) => void): void => {
    const dir = join(imports, name)
    cpSync(fx.hf(variant), dir, { recursive: true })
    breakIt(dir)
  }
  const weights = (dir: string): string => join(dir, 'model.safetensors')
  const shard = (dir: string, i: number): string => join(dir, `model-0000${i}-of-00003.safetensors`)
  cpSync(fx.hf('llama-gqa'), join(scratch, 'elsewhere'), { recursive: true })
  symlinkSync(join(scratch, 'elsewhere'), join(imports, 'link-out'))
  writeFileSync(join(imports, 'a-file'), 'not a folder')
  broken('weights-link-out', 'llama-gqa', (d) => { unlinkSync(weights(d)); symlinkSync(join(scratch, 'outside.safetensors'), weights(d)) })
  broken('bert', 'llama-gqa', (d) => { editJson(join(d, 'config.json'), (c) => { c.architectures = ['BertForMaskedLM'] }) })
  broken('yarn', 'llama-gqa', (d) => { editJson(join(d, 'config.json'), (c) => { c.rope_scaling = { rope_type: 'yarn', factor: 4.0 } }) })
  broken('vocab', 'llama-gqa', (d) => { editJson(join(d, 'config.json'), (c) => { c.vocab_size = 9000 }) })
  broken('eos-id', 'llama-gqa', (d) => { editJson(join(d, 'config.json'), (c) => { c.eos_token_id = 8500 }) })
  broken('int8', 'llama-gqa', (d) => { editHeader(weights(d), (h) => { h['model.layers.0.mlp.up_proj.weight'].dtype = 'I8' }) })
  broken('missing-tensor', 'llama-gqa', (d) => { editHeader(weights(d), (h) => { delete h['model.norm.weight'] }) }) // eslint-disable-line @typescript-eslint/no-dynamic-delete
  broken('header-overrun', 'llama-gqa', (d) => { const f = readFileSync(weights(d)); f.writeBigUInt64LE(BigInt(f.length * 2), 0); writeFileSync(weights(d), f) })
  broken('truncated', 'llama-gqa', (d) => { truncateSync(weights(d), 4096) })
  broken('missing-shard', 'llama-mqa-linear-f16-sharded', (d) => { unlinkSync(shard(d, 2)) })
  broken('corrupt-shard', 'llama-mqa-linear-f16-sharded', (d) => { writeFileSync(shard(d, 3), Buffer.alloc(64, 0xff)) })
  broken('index-names-missing', 'llama-mqa-linear-f16-sharded', (d) => {
    editJson(join(d, 'model.safetensors.index.json'), (i) => { (i.weight_map as Record<string, string>)['model.norm.weight'] = 'model-00004-of-00003.safetensors' })
  })
  const srv = await startServer({ modelsDir: tinyModelsDir(), copyModels: true, env: { T2R_IMPORTS_DIR: imports } })
  const bare = await startServer({ modelsDir: tinyModelsDir(), copyModels: true })
  t.teardown(async () => {
    await srv.close()
    await bare.close()
    rmSync(scratch, { recursive: true, force: true })
  })
  const before = readdirSync(srv.modelsDir).sort()

  const cases: Array<[string, unknown, RegExp]> = [
    ['..', { type: 'hf', path: '../elsewhere' }, /must be relative to the imports folder and must not contain "\.\."/],
    ['absolute', { type: 'hf', path: '/etc' }, /must be relative/],
    ['missing', { type: 'hf', path: 'nope' }, /source\.path nope not found under the imports folder/],
    ['symlink out of the imports folder', { type: 'hf', path: 'link-out' }, /link-out leads outside the imports folder/],
    ['a file', { type: 'hf', path: 'a-file' }, /is not a folder/],
    ['weights symlinked out of the checkpoint', { type: 'hf', path: 'weights-link-out' }, /model\.safetensors is a symlink leading outside the checkpoint folder/],
    ['unsupported architecture', { type: 'hf', path: 'bert' }, /architecture BertForMaskedLM is not supported/],
    ['unsupported rope type', { type: 'hf', path: 'yarn' }, /rope_scaling type 'yarn' is not supported/],
    ['vocabulary/embedding mismatch', { type: 'hf', path: 'vocab' }, /model\.embed_tokens\.weight has 8192 rows but config\.json vocab_size is 9000/],
    ['EOS id not in the tokenizer', { type: 'hf', path: 'eos-id' }, /config\.json: eos_token_id 8500 is not a token of tokenizer\.json/],
    ['quantized (int8) weights', { type: 'hf', path: 'int8' }, /tensor model\.layers\.0\.mlp\.up_proj\.weight has dtype I8/],
    ['missing tensor', { type: 'hf', path: 'missing-tensor' }, /missing tensor model\.norm\.weight/],
    ['header length overrunning the file', { type: 'hf', path: 'header-overrun' }, /header length \d+ exceeds the file/],
    ['truncated weights', { type: 'hf', path: 'truncated' }, /runs past the end of the file/],
    ['missing shard', { type: 'hf', path: 'missing-shard' }, /names model-00002-of-00003\.safetensors, which is missing/],
    ['corrupt shard', { type: 'hf', path: 'corrupt-shard' }, /model-00003-of-00003\.safetensors: header length/],
    ['index naming a missing file', { type: 'hf', path: 'index-names-missing' }, /names model-00004-of-00003\.safetensors, which is missing/]
  ]
  let n = 0
  for (const [what, source, message] of cases) {
    t.test(what, async (t) => {
      const r = await submit(srv, { ...small, source, name: `bad-${n++}` })
      t.equal(r.status, 422, '422')
      t.equal(r.body.error?.param, 'source.path', 'naming source.path')
      t.match(r.body.error?.message ?? '', message, 'saying what is wrong')
      t.notOk((r.body.error?.message ?? '').includes('\n'), 'in one line')
      t.notOk((r.body.error?.message ?? '').includes(scratch), 'without the server\'s own paths')
    })
  }
  t.test('source_model and source: exactly one', async (t) => {
    for (const body of [{ ...small, name: 'both', source_model: 'tiny-base', source: { type: 'hf', path: 'bert' } }, { ...small, name: 'neither' }]) {
      const r = await submit(srv, body)
      t.equal(r.status, 422)
      t.equal(r.body.error?.param, 'source_model')
    }
  })
  t.test('a server without --imports-dir refuses hf sources', async (t) => {
    const r = await submit(bare, { ...small, source: { type: 'hf', path: 'llama-gqa' }, name: 'x' })
    t.equal(r.status, 422)
    t.equal(r.body.error?.param, 'source.path')
    t.match(r.body.error?.message ?? '', /--imports-dir/)
  })
  t.test('nothing queued, nothing in models/, still serving', async (t) => {
    const jobs = await (await fetch(`${srv.url}/v1/conversions`)).json() as { data: unknown[] }
    t.same(jobs.data, [], 'no job was queued')
    t.same(readdirSync(srv.modelsDir).sort(), before, 'models/ is as it was')
    t.same(readdirSync(join(srv.dataDir, 'conversions')).filter((f) => f.startsWith('conv_')), [], 'no job folder left behind')
    const gen = await postJson(`${srv.url}/v1/completions`, { model: 'tiny-t2r', prompt: 'The', max_tokens: 3 })
    t.equal(gen.status, 200, 'generation still works')
  })
})
